"""``GET /health``, ``/ready``, ``/metrics``: open, for probes and scrapers (liveness,
readiness and the served versions; counts). ``GET /version``: the models' sources and full
manifests, behind the API key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from mltrail import __version__
from mltrail.serve import schemas
from mltrail.serve.deps import API_KEY, ModelsDep, SettingsDep, StateDep
from mltrail.serve.follow import followed_alias

router = APIRouter(tags=["status"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": schemas.ErrorResponse}})
async def ready(state: StateDep, models: ModelsDep) -> JSONResponse:
    # Every configured model loaded (503 and the missing kinds otherwise).
    missing = [k for k in state.configured() if k not in models]
    if missing:
        return JSONResponse({"ready": False, "missing": missing}, status_code=503)
    return JSONResponse({"ready": True, "models": models.versions()})


@router.get("/version", dependencies=[API_KEY])
async def version(settings: SettingsDep, models: ModelsDep) -> dict[str, Any]:
    return {
        "mltrail": __version__,
        "image_tag": settings.image_tag,
        "models": {
            kind: {
                "version": m.version,
                "source": m.source,
                # The registry version a models:/ source resolved to, and the alias the
                # server follows (None: a fixed source, or following turned off).
                "registry_version": m.registry_version,
                "follows": m.source
                if settings.alias_poll_s > 0 and followed_alias(m.source)
                else None,
                "manifest": m.manifest.to_json(),
            }
            for kind, m in models.items()
        },
    }


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
