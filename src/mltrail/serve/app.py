"""The model server's app factory: state, lifespan, routers, middleware; nothing else.

    app = create_app(load_settings(text_model="models/text/baseline"))

Routes (one router per resource, in ``mltrail.serve.routers``): ``GET /health`` (alive),
``/ready`` (every configured model loaded), ``/metrics`` (Prometheus), ``/version``
(manifests, image tag), ``/status`` (the status page, HTML); ``POST /predict/text``,
``/predict/image``, ``/feedback`` and ``/admin/reload``. ``/version``, ``/status``, predict
and feedback need the bearer token ``api_key`` (``/status`` also a cookie of its login form),
admin ``admin_api_key`` (else ``api_key``); an address other than loopback is refused without
a key (docs/security.md). Every prediction leaves a telemetry record (see
``mltrail.telemetry``); one pure ASGI middleware enforces the body limit and counts requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mltrail import __version__
from mltrail.errors import MltrailError
from mltrail.models.loading import load
from mltrail.serve import schemas
from mltrail.serve.follow import follow_aliases
from mltrail.serve.middleware import LimitsAndMetrics
from mltrail.serve.reload import describe, watch_pointer
from mltrail.serve.routers import admin, feedback, page, predict, status
from mltrail.serve.settings import ServeSettings, check_exposure
from mltrail.serve.state import ServerState
from mltrail.telemetry import Telemetry, TelemetryStore, build_sinks

log = logging.getLogger("mltrail.serve")


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for ``settings``; a :class:`MltrailError` for an address other than loopback
    without an API key (unless ``allow_unauthenticated``)."""
    exposed = check_exposure(settings)
    app = FastAPI(
        title="mltrail model server",
        version=__version__,
        lifespan=lifespan,
        responses={
            401: {"model": schemas.ErrorResponse, "description": "missing or wrong API key"},
            413: {"model": schemas.ErrorResponse, "description": "request too large"},
            422: {"model": schemas.ErrorResponse, "description": "invalid request"},
        },
        exception_handlers={
            MltrailError: mltrail_error,
            RequestValidationError: schemas.validation_error,
        },
    )
    state = ServerState(settings)
    state.exposed = exposed
    app.state.mltrail = state
    for router in (status.router, page.router, predict.router, feedback.router, admin.router):
        app.include_router(router)
    # Outside the routing and its error handling: sees every response, 413s included.
    app.add_middleware(LimitsAndMetrics, state=state)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models and start telemetry; on shutdown, flush what the requests queued."""
    state: ServerState = app.state.mltrail
    settings = state.settings
    if state.exposed:
        log.warning("%s", state.exposed)
    for kind, source in state.configured().items():
        model = await run_in_threadpool(load, source, kind)
        state.models.swap({kind: model})
        log.info("serving %s model %s", kind, describe(model))
    sinks = build_sinks(settings.telemetry)
    # Feedback for a prediction older than the in-memory index is looked up in the store.
    state.store = next((s for s in sinks if isinstance(s, TelemetryStore)), None)
    state.telemetry = Telemetry(settings.telemetry, sinks)
    state.telemetry.start()
    # Everything loaded so far (libraries, models) lives as long as the server: keep it out of
    # the garbage collector's full passes, which otherwise walk it all and stall the event
    # loop for tens of milliseconds (the p99 latency, under load).
    gc.collect()
    gc.freeze()
    watchers = []
    if settings.pointer_file:
        watchers.append(asyncio.create_task(watch_pointer(state)))
    if settings.alias_poll_s > 0:  # follows the models:/NAME@ALIAS sources, if any
        watchers.append(asyncio.create_task(follow_aliases(state, settings.alias_poll_s)))
    try:
        yield
    finally:
        for watcher in watchers:
            watcher.cancel()
        # uvicorn has finished the in-flight requests: flush what they queued.
        await run_in_threadpool(state.telemetry.close)


async def mltrail_error(request: Request, exc: Exception) -> JSONResponse:
    """An error of mltrail's own (a model that cannot be loaded, ...) is a 409."""
    return JSONResponse({"detail": str(exc)}, status_code=409)
