"""deploy/k8s: `kubectl kustomize` renders it, every object validates against the Kubernetes
schemas of :data:`KUBERNETES` (kubernetes-validate, strict: an unknown field is an error), the
properties that matter hold (probes, non-root, read-only root, secrets by reference, a grace
period that covers the telemetry drain), and the server Deployment runs under `podman kube
play`: it answers predictions on its published port, then `podman kube down` stops it."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from mltrail.settings import ServeSettingsBase, TelemetrySettings
from tests.conftest import free_port
from tests.release.containers import (
    REPO,
    image_size_mb,
    podman,
    require_podman,
    serving_image,
)

K8S = REPO / "deploy" / "k8s"
KUBERNETES = "1.32.0"
"""The Kubernetes version the manifests are validated against (autoscaling/v2, batch/v1
CronJob with podFailurePolicy: all GA there)."""

Doc = dict[str, Any]


def _render(path: Path = K8S) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: scripts/test installs it as root (apt-get)")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> list[Doc]:
    return _render()


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _container(pod_spec: Doc, name: str) -> Doc:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_rendered_object_validates_against_the_kubernetes_schemas(
    rendered: list[Doc],
) -> None:
    kinds = sorted(
        (d["kind"], re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"])) for d in rendered
    )
    assert kinds == [
        ("ConfigMap", "mltrail-params"),
        ("CronJob", "mltrail-monitor"),
        ("Deployment", "mltrail-server"),
        ("Deployment", "mltrail-tracking"),
        ("HorizontalPodAutoscaler", "mltrail-server"),
        ("Namespace", "mltrail"),
        ("Service", "mltrail-server"),
        ("Service", "mltrail-tracking"),
    ]
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "mltrail"


def test_the_validation_would_catch_a_mistake(rendered: list[Doc]) -> None:
    """Strict: a misspelt field (livenessprobe) or a wrong type is an error, not ignored."""
    server = copy.deepcopy(_one(rendered, "Deployment", "mltrail-server"))
    container = server["spec"]["template"]["spec"]["containers"][0]
    container["livenessprobe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessprobe"):
        kubernetes_validate.validate(server, KUBERNETES, strict=True)
    server = copy.deepcopy(_one(rendered, "Deployment", "mltrail-server"))
    server["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(server, KUBERNETES, strict=True)


def _graceful_s(container: Doc) -> float:
    """The server's graceful-shutdown timeout in this container: its MLTRAIL_GRACEFUL_SHUTDOWN_S,
    else the declared default (src/mltrail/settings.py, which cli/serve.py gives uvicorn)."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    declared = ServeSettingsBase.model_fields["graceful_shutdown_s"].default
    return float(env.get("MLTRAIL_GRACEFUL_SHUTDOWN_S") or declared)


def test_the_server_deployment(rendered: list[Doc]) -> None:
    server = _one(rendered, "Deployment", "mltrail-server")
    pod = server["spec"]["template"]["spec"]
    container = _container(pod, "server")
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    assert container["args"][:2] == ["mltrail", "serve"]
    assert container["args"][container["args"].index("--port") + 1] == str(port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # Not root, read-only root filesystem, nothing to escalate to.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # What it writes lies on an emptyDir: the telemetry files of the image's settings, temp.
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty]
    settings = yaml.safe_load((REPO / "deploy" / "serve.yaml").read_text())["telemetry"]
    for path in (settings["sqlite_path"], settings["spill_dir"], "/tmp/x"):
        assert any(Path(path).is_relative_to(m) for m in mounts), (path, mounts)
    # Secrets by reference only.
    env = _env(container)
    for name, key in (("MLTRAIL_API_KEY", "api-key"), ("MLTRAIL_TELEMETRY_DSN", "telemetry-dsn")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "mltrail-server", "key": key}
        assert "value" not in env[name]
    assert env["MLTRAIL_IMAGE_TAG"]["value"] == container["image"] == "mltrail:latest"
    # The grace period covers preStop, the graceful shutdown and the telemetry drain.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + _graceful_s(container) + TelemetrySettings().shutdown_timeout_s
    assert pod["terminationGracePeriodSeconds"] >= needed + 5
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    service = _one(rendered, "Service", "mltrail-server")
    assert service["spec"]["selector"] == server["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = _one(rendered, "HorizontalPodAutoscaler", "mltrail-server")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mltrail-server",
    }
    assert hpa["metrics"][0]["resource"]["name"] == "cpu" and hpa["minReplicas"] >= 2


def test_the_monitor_cronjob(rendered: list[Doc]) -> None:
    from mltrail.cli.app import build_parser
    from mltrail.config import load_params

    cron = _one(rendered, "CronJob", "mltrail-monitor")["spec"]
    job = cron["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    container = _container(pod, "monitor")
    args = build_parser().parse_args(container["args"][1:])  # mltrail's own parser takes them
    assert args.verb == "monitor" and args.retrain_exit_code == 3
    # The production store: the servers' DSN, from the same Secret, never on the command line.
    assert args.store is None
    dsn = _env(container)["MLTRAIL_TELEMETRY_DSN"]["valueFrom"]["secretKeyRef"]
    server = _container(
        _one(rendered, "Deployment", "mltrail-server")["spec"]["template"]["spec"], "server"
    )
    assert dsn == _env(server)["MLTRAIL_TELEMETRY_DSN"]["valueFrom"]["secretKeyRef"]
    # A retrain decision fails the Job at once; it is not retried.
    rule = job["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [3]
    assert pod["restartPolicy"] == "Never" and cron["concurrencyPolicy"] == "Forbid"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Its params come from the ConfigMap: the repository's params.yaml, valid.
    volume = next(v for v in pod["volumes"] if v["name"] == "params")
    config = _one(rendered, "ConfigMap", volume["configMap"]["name"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "params")["mountPath"]
    assert args.params == Path(mount) / "params.yaml"
    shipped = config["data"]["params.yaml"]
    assert shipped == (REPO / "params.yaml").read_text(), (
        "deploy/k8s/base/params.yaml differs from params.yaml: cp params.yaml deploy/k8s/base/"
    )
    assert load_params(REPO / "deploy" / "k8s" / "base" / "params.yaml").monitor.window > 0


def test_the_tracking_server(rendered: list[Doc]) -> None:
    from mltrail.cli.app import build_parser

    tracking = _one(rendered, "Deployment", "mltrail-tracking")["spec"]["template"]["spec"]
    container = _container(tracking, "tracking")
    args = build_parser().parse_args(container["args"][1:])
    assert (args.verb, args.what) == ("tracking", "server")
    assert args.artifacts.startswith("s3://") and args.s3_endpoint_url.startswith("http")
    assert (args.host, args.port) == ("0.0.0.0", 5000)
    # The database password is not in the URI (a command line): libpq reads PGPASSWORD.
    assert re.fullmatch(r"postgresql://[^:@/]+@[^/]+/\w+", args.backend_store_uri)
    env = _env(container)
    for name in ("PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "mltrail-tracking"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = _one(rendered, "Service", "mltrail-tracking")["spec"]
    assert service["ports"][0]["targetPort"] == "http"


@pytest.fixture
def played(tmp_path: Path) -> Iterator[list[Path]]:
    """The YAML files given to `podman kube play`; each is brought down afterwards."""
    files: list[Path] = []
    yield files
    for file in files:
        podman("kube", "down", str(file), check=False)
    podman("secret", "rm", "mltrail-server", check=False)


@pytest.mark.containers
def test_the_server_deployment_runs_under_podman_kube_play(
    tmp_path: Path, played: list[Path]
) -> None:
    require_podman()
    image = serving_image()
    # deploy/k8s with the image built here, as a release sets it (`kustomize edit set image`
    # writes this entry): the replacement carries the image to MLTRAIL_IMAGE_TAG.
    overlay = tmp_path / "k8s"
    shutil.copytree(K8S, overlay)
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    name, tag = image.rsplit(":", 1)
    entry = next(i for i in kustomization["images"] if i["name"] == "mltrail")
    entry |= {"newName": name, "newTag": tag}
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    server = _one(_render(overlay), "Deployment", "mltrail-server")
    container = _container(server["spec"]["template"]["spec"], "server")
    assert container["image"] == image == _env(container)["MLTRAIL_IMAGE_TAG"]["value"]
    # What a cluster supplies and podman cannot: no namespace, one replica, and the port
    # published on loopback (a Service's job in a cluster). Nothing else is changed.
    del server["metadata"]["namespace"]
    server["spec"]["replicas"] = 1
    port = free_port()
    container["ports"][0] |= {"hostPort": port, "hostIP": "127.0.0.1"}
    # The Secret, as podman 4 reads it for secretKeyRef: a JSON map of base64 values. No
    # PostgreSQL in the pod's network: the telemetry sink is down, which the server survives
    # (it keeps the records for retry), as it would a database outage.
    api_key = "kube-play-key"
    values = {"api-key": api_key, "telemetry-dsn": "postgresql://mltrail@127.0.0.1:1/telemetry"}
    secret = tmp_path / "secret.json"
    secret.write_text(
        json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})
    )
    podman("secret", "rm", "mltrail-server", check=False)
    podman("secret", "create", "mltrail-server", str(secret))
    manifest = tmp_path / "server.yaml"
    manifest.write_text(yaml.safe_dump(server))
    played.append(manifest)

    started = time.monotonic()
    podman("kube", "play", str(manifest))
    url = f"http://127.0.0.1:{port}"
    ready = None
    while time.monotonic() - started < 120:
        with contextlib.suppress(httpx.TransportError):
            ready = httpx.get(f"{url}/ready", timeout=2)
            if ready.status_code == 200:
                break
        time.sleep(0.25)
    to_ready = time.monotonic() - started
    assert ready is not None and ready.status_code == 200, "the pod never became ready"
    print(f"\npodman kube play -> /ready: {to_ready:.1f} s; image {image_size_mb(image):.0f} MB")

    # The pod is what the manifest says: user 10001, read-only root, the key from the Secret.
    pod_name = f"{server['metadata']['name']}-pod-0"
    ctr = f"{pod_name}-server"
    user, read_only = podman(
        "inspect", ctr, "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}"
    ).split()
    assert (user.split(":")[0], read_only) == ("10001", "true")
    body = {"texts": ["a fine film, moving and well acted", "dull and far too long"]}
    assert httpx.post(f"{url}/predict/text", json=body, timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {api_key}"}
    answer = httpx.post(f"{url}/predict/text", json=body, headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2 and {p["class_name"] for p in predictions} <= {"neg", "pos"}
    version = httpx.get(f"{url}/version", headers=auth, timeout=10).json()
    assert version["image_tag"] == image
    # The read-only root holds: the server wrote only to its emptyDirs.
    written = podman("exec", ctr, "sh", "-c", "touch /app/x 2>&1; ls /data").strip()
    assert "Read-only file system" in written

    podman("kube", "down", str(manifest))
    played.remove(manifest)
    assert pod_name not in podman("pod", "ps", "--format", "{{.Name}}")
