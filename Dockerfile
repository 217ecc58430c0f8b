# syntax=docker/dockerfile:1
# The model server image: the pipeline's models baked in, as the paper does.
#
#   dvc pull   (or dvc repro)   # the models must be in models/ first
#   docker build -t mltrail:latest \
#     --build-arg GIT_COMMIT="$(git rev-parse HEAD)" \
#     --build-arg BUILD_TIME="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg TEXT_MODEL_SHA256="$(jq -r .model.sha256 models/text/baseline/manifest.json)" \
#     --build-arg IMAGE_MODEL_SHA256="$(jq -r .model.sha256 models/cifar10/baseline/manifest.json)" .
#   (no Docker engine, no registry: scripts/build-image builds it with buildah from a local base)
#   docker run -p 8080:8080 -e MLTRAIL_API_KEY=... -e MLTRAIL_IMAGE_TAG=mltrail:<tag> mltrail:latest
#
# Serving what the MLflow registry names instead of the baked-in models (the image has the MLflow
# client, mlflow-skinny, not the server): the server follows the alias, so `mltrail promote`
# reaches every replica, on any host, within MLTRAIL_ALIAS_POLL_S seconds (docs/serving.md):
#   docker run ... -e MLFLOW_TRACKING_URI=http://mlflow:5000 \
#     -e MLTRAIL_TEXT_MODEL=models:/mltrail-text@production mltrail:latest
#
# No secret goes into a layer or a build argument: the API key and the telemetry DSN are given
# to `docker run` as environment variables. The server listens on 0.0.0.0, so it needs the key:
# without MLTRAIL_API_KEY the container exits at start and says so (MLTRAIL_ADMIN_API_KEY: a
# separate key for /admin/reload; MLTRAIL_ALLOW_UNAUTHENTICATED=1 serves everything open, for a
# network where every client is trusted only). See docs/security.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with the serving dependencies, then mltrail ----------------
FROM ${PYTHON_IMAGE} AS build
# What the server gets: `serve` runs the CNN under ONNX Runtime from the model's model.onnx,
# without torch (0.8 GB less; benchmarks/results/cnn_runtime.md: same outputs, 3-4x faster).
# SERVE_EXTRAS=serve,torch adds torch, for a CNN trained before model.onnx existed.
ARG SERVE_EXTRAS=serve
# Where the CPU torch wheel comes from, when SERVE_EXTRAS has torch: PyTorch's CPU index. A
# closed network points this at a local mirror of that index instead (scripts/build-image
# serves one from a wheel on disk).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the pinned tree (this layer is reused until they change). torch, if
# asked for: the CPU build, from PyTorch's own index (the PyPI default pulls CUDA, ~3 GB).
# The placeholder package and setuptools' build/ go afterwards: build/lib would keep the empty
# __init__.py (newer than the real one COPY brings) and the image's mltrail would not import.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p src/mltrail && touch src/mltrail/__init__.py \
 && case ",${SERVE_EXTRAS}," in \
      *,torch,*) set -- --extra-index-url "${TORCH_INDEX_URL}" ;; \
      *) set -- ;; \
    esac \
 && pip install "$@" -c constraints.txt ".[${SERVE_EXTRAS}]" \
 && pip uninstall -y mltrail && rm -rf build src
COPY src ./src
RUN pip install --no-deps . && rm -rf /src

# ---- runtime: the environment, the models, a user without privileges -------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mltrail \
 && mkdir -p /data && chown mltrail /data
COPY --from=build /opt/venv /opt/venv
COPY --chown=mltrail models/text/baseline /app/models/text
COPY --chown=mltrail models/cifar10/baseline /app/models/image
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLTRAIL_TEXT_MODEL=/app/models/text \
    MLTRAIL_IMAGE_MODEL=/app/models/image \
    MLTRAIL_SERVE_SETTINGS=/app/serve.yaml \
    MLFLOW_DISABLE_TELEMETRY=true
COPY --chown=mltrail deploy/serve.yaml /app/serve.yaml
# The build fails here, not the container at start, if a baked-in model cannot be served by
# this environment (a CNN without model.onnx in an image without torch: retrain it).
# The MLflow client that fetches and follows models:/<name>@<alias> must import as well.
RUN PYTHONDONTWRITEBYTECODE=1 python -c "from mltrail.models.loading import load; \
import mlflow.artifacts, mlflow.tracking; \
print(load('/app/models/text', 'text').version, load('/app/models/image', 'image').runtime)"
WORKDIR /data
USER 10001
# 8080, not 80: a user without privileges binds a port below 1024 only where the engine sets
# net.ipv4.ip_unprivileged_port_start=0 (Docker does; podman and many clusters do not). The
# health check asks the same port, so it holds wherever the image runs unchanged.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
CMD ["mltrail", "serve", "--host", "0.0.0.0", "--port", "8080"]
# The lineage labels come last: the commit and the build time change with every build, and an
# ARG is part of the cache key of every step after it. Declared at the top of the stage, they
# made every rebuild copy the venv and the models again (a new 0.9 GB layer per build); here a
# rebuild of unchanged code and models only writes this metadata.
ARG GIT_COMMIT=unknown
ARG BUILD_TIME=unknown
ARG TEXT_MODEL_SHA256=unknown
ARG IMAGE_MODEL_SHA256=unknown
LABEL org.opencontainers.image.title="mltrail model server" \
      org.opencontainers.image.source="https://github.com/mltrail/mltrail" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.created="${BUILD_TIME}" \
      io.mltrail.text-model.sha256="${TEXT_MODEL_SHA256}" \
      io.mltrail.image-model.sha256="${IMAGE_MODEL_SHA256}"
