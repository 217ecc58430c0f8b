"""The model server: an app factory, its routes, and what wraps them (limits, auth, metrics).

    app = create_app(load_settings(text_model="models/text/baseline"))

Routes: ``GET /health`` (alive), ``/ready`` (every configured model loaded), ``/version``
(manifests, image tag), ``/metrics`` (Prometheus); ``POST /predict/text``, ``/predict/image``,
``/feedback`` and ``/admin/reload`` (bearer token when an API key is set). Text prediction runs
inline on the event loop (a millisecond of scikit-learn costs less than a thread hop); the CNN
runs in the thread pool. Every prediction leaves a telemetry record (see ``mltrail.telemetry``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hmac
import io
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, ORJSONResponse, Response
from numpy.typing import NDArray
from pydantic import ValidationError

from mltrail import __version__
from mltrail.contracts.pointer import Pointer
from mltrail.contracts.tasks import KINDS, PREDICT_ENDPOINTS, kind_spec
from mltrail.errors import MltrailError
from mltrail.models.loading import LoadedModel, load
from mltrail.serve import schemas
from mltrail.serve.metrics import ServerMetrics
from mltrail.serve.settings import ServeSettings
from mltrail.telemetry import (
    Capture,
    Feedback,
    Prediction,
    Telemetry,
    TelemetryStore,
    build_sinks,
)

log = logging.getLogger("mltrail.serve")
TEXT_ENDPOINT = kind_spec("text").endpoint
IMAGE_ENDPOINT = kind_spec("image").endpoint
METRIC_PATHS = frozenset({
    "/health", "/ready", "/version", "/metrics", *PREDICT_ENDPOINTS, "/feedback",
    "/admin/reload", "/docs", "/openapi.json",
})  # fmt: skip
"""The routes request metrics are labelled with; any other path counts as ``other`` (a label
per path a client makes up would grow Prometheus' series without bound)."""
RECENT_IDS = 1_000_000  # prediction ids remembered for /feedback (older ones: the store)
IMAGE_TYPES = ("image/png", "image/jpeg")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerState:
    """Everything the routes share: models (swapped whole on reload), telemetry, metrics."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.telemetry: Telemetry | None = None
        self.metrics = ServerMetrics(lambda: self.telemetry)
        self.recent: OrderedDict[str, int] = OrderedDict()  # prediction id -> class count
        self.store: TelemetryStore | None = None
        self.reload_lock = asyncio.Lock()
        self.pointer_mtime: float | None = None
        # Prometheus children bound once, not looked up by label on every prediction.
        self._class_counters: dict[tuple[str, str], list[Any]] = {}
        self.confidence = {k: self.metrics.confidence.labels(k) for k in KINDS}

    def class_counters(self, model: LoadedModel) -> list[Any]:
        key = (model.kind, model.version)
        found = self._class_counters.get(key)
        if found is None:
            found = [self.metrics.predictions.labels(model.kind, c) for c in model.classes]
            self._class_counters[key] = found
        return found

    def configured(self) -> dict[str, str]:
        """The models to serve: the settings', else the pointer file's (as it was at start)."""
        wanted = Pointer(text=self.settings.text_model, image=self.settings.image_model)
        pointer = self.settings.pointer_file
        if pointer and len(wanted.sources()) < len(KINDS):
            try:
                wanted = wanted.fill(Pointer.read(Path(pointer)))
            except MltrailError as exc:
                log.warning("%s", exc)
        return dict(wanted.sources())

    def model(self, kind: str) -> LoadedModel:
        found = self.models.get(kind)
        if found is None:
            raise HTTPException(503, f"no {kind} model is loaded on this server")
        return found

    def remember(self, prediction_id: str, classes: int) -> None:
        self.recent[prediction_id] = classes
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)


def _limits_and_metrics(app: ASGIApp, state: ServerState) -> ASGIApp:
    """Outermost wrapper: 413 for bodies over the limit (before reading them when the size is
    declared), and the request count and latency of every response, by endpoint and status."""
    limit = state.settings.max_body_bytes

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"] if scope["path"] in METRIC_PATHS else "other"
        status = 500

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        try:
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                response = JSONResponse(
                    {"detail": f"request body of {int(declared)} bytes is over the limit of "
                               f"{limit} bytes"},
                    status_code=413,
                )  # fmt: skip
                await response(scope, receive, send_seen)
            else:
                await app(scope, receive_limited, send_seen)
        finally:
            state.metrics.requests.labels(path, str(status)).inc()
            state.metrics.latency.labels(path).observe(time.perf_counter() - started)

    return wrapped


def create_app(settings: ServeSettings) -> FastAPI:
    state = ServerState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for kind, source in state.configured().items():
            state.models[kind] = await run_in_threadpool(load, source, kind)
            model = state.models[kind]
            log.info("serving %s model %s from %s (%s)", kind, model.version, source, model.runtime)
        sinks = build_sinks(settings.telemetry)
        # Feedback for a prediction older than the in-memory index is looked up in the store.
        state.store = next((s for s in sinks if isinstance(s, TelemetryStore)), None)
        state.telemetry = Telemetry(settings.telemetry, sinks)
        state.telemetry.start()
        # Everything loaded so far (libraries, models) lives as long as the server: keep it
        # out of the garbage collector's full passes, which otherwise walk it all and stall
        # the event loop for tens of milliseconds (the p99 latency, under load).
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(_watch_pointer(state)) if settings.pointer_file else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            # uvicorn has finished the in-flight requests: flush what they queued.
            await run_in_threadpool(state.telemetry.close)

    app = FastAPI(
        title="mltrail model server",
        version=__version__,
        lifespan=lifespan,
        responses={
            401: {"model": schemas.ErrorResponse, "description": "missing or wrong API key"},
            413: {"model": schemas.ErrorResponse, "description": "request too large"},
            422: {"model": schemas.ErrorResponse, "description": "invalid request"},
        },
    )
    app.state.mltrail = state

    def require_key(request: Request) -> None:
        key = settings.api_key
        if not key:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
            raise HTTPException(
                401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(require_key)]

    @app.get("/health", tags=["status"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["status"], responses={503: {"model": schemas.ErrorResponse}})
    async def ready() -> JSONResponse:
        missing = [k for k in state.configured() if k not in state.models]
        if missing:
            return JSONResponse({"ready": False, "missing": missing}, status_code=503)
        return JSONResponse(
            {"ready": True, "models": {k: m.version for k, m in state.models.items()}}
        )

    @app.get("/version", tags=["status"])
    async def version() -> dict[str, Any]:
        return {
            "mltrail": __version__,
            "image_tag": settings.image_tag,
            "models": {
                kind: {"version": m.version, "source": m.source, "manifest": m.manifest.to_json()}
                for kind, m in state.models.items()
            },
        }

    @app.get("/metrics", tags=["status"], response_class=Response)
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        TEXT_ENDPOINT,
        tags=["predict"],
        dependencies=auth,
        response_model=schemas.PredictResponse,
        response_class=ORJSONResponse,
    )
    async def predict_text(body: schemas.TextRequest) -> Response:
        texts = _items(body)
        _check_batch(len(texts), settings.max_batch)
        too_long = [i for i, t in enumerate(texts) if len(t) > settings.max_text_chars]
        if too_long:
            raise HTTPException(
                422, f"texts at positions {too_long[:10]} are over {settings.max_text_chars} "
                "characters",
            )  # fmt: skip
        model = state.model("text")
        started = time.perf_counter()
        probs, profiles = model.predict(texts)
        inference_ms = (time.perf_counter() - started) * 1000
        if settings.log_inputs:
            log.info("predict/text inputs: %r", texts)
        explanations = None
        if body.explain and model.explain is not None:
            explain = model.explain
            explanations = [explain(t, int(p.argmax())) for t, p in zip(texts, probs, strict=True)]
        return _answer(state, model, TEXT_ENDPOINT, probs, profiles, inference_ms,
                       body.probabilities, explanations, texts)  # fmt: skip

    @app.post(
        IMAGE_ENDPOINT,
        tags=["predict"],
        dependencies=auth,
        response_model=schemas.PredictResponse,
        response_class=ORJSONResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas.ImageRequest.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                            "required": ["file"],
                        }
                    },
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def predict_image(request: Request) -> Response:
        images, want_probs = await _read_images(request, settings)
        _check_batch(len(images), settings.max_batch)
        model = state.model("image")
        started = time.perf_counter()
        probs, profiles = await run_in_threadpool(model.predict, images)
        inference_ms = (time.perf_counter() - started) * 1000
        return _answer(
            state, model, IMAGE_ENDPOINT, probs, profiles, inference_ms, want_probs,
            inputs=images,
        )  # fmt: skip

    @app.post(
        "/feedback",
        tags=["predict"],
        dependencies=auth,
        responses={404: {"model": schemas.ErrorResponse, "description": "unknown prediction"}},
    )
    async def feedback(body: schemas.FeedbackRequest) -> schemas.FeedbackResponse:
        classes = state.recent.get(body.prediction_id)
        if classes is None:
            store = state.store
            known = store is not None and await run_in_threadpool(
                store.has_prediction, body.prediction_id
            )
            if not known:
                raise HTTPException(404, f"no prediction with id {body.prediction_id!r}")
        elif body.label >= classes:
            raise HTTPException(422, f"label {body.label} is not a class index (0-{classes - 1})")
        assert state.telemetry is not None
        state.telemetry.submit(Feedback(body.prediction_id, time.time(), body.label))
        return schemas.FeedbackResponse(prediction_id=body.prediction_id, accepted=True)

    @app.post(
        "/admin/reload",
        tags=["admin"],
        dependencies=auth,
        responses={409: {"model": schemas.ErrorResponse, "description": "reload failed"}},
    )
    async def admin_reload(body: schemas.ReloadRequest) -> schemas.ReloadResponse:
        wanted = Pointer(text=body.text_model, image=body.image_model)
        return schemas.ReloadResponse(reloaded=await _reload(state, wanted))

    @app.exception_handler(MltrailError)
    async def mltrail_error(request: Request, exc: MltrailError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    # Outside the routing and its error handling: sees every response, 413s included.
    app.add_middleware(_LimitsMiddleware, state=state)
    return app


class _LimitsMiddleware:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self._wrapped = _limits_and_metrics(app, state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._wrapped(scope, receive, send)


def _items(body: schemas.TextRequest | schemas.ImageRequest) -> list[Any]:
    try:
        return body.items()
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _check_batch(size: int, limit: int) -> None:
    if size > limit:
        raise HTTPException(413, f"batch of {size} is over the limit of {limit}")


def _answer(
    state: ServerState,
    model: LoadedModel,
    endpoint: str,
    probs: NDArray[np.float64],
    profiles: list[dict[str, float]],
    inference_ms: float,
    with_probabilities: bool,
    explanations: list[list[dict[str, Any]]] | None = None,
    inputs: Any = None,
) -> Response:
    """The response (the shape of ``schemas.PredictResponse``, serialized directly: validating
    what this function builds would cost more than the model), telemetry and metrics."""
    labels = probs.argmax(axis=1).tolist()
    now = time.time()
    per_item_ms = inference_ms / max(len(labels), 1)
    predictions = []
    telemetry = state.telemetry
    counters = state.class_counters(model)
    capture = state.settings.capture_inputs if telemetry is not None else 0.0
    for i, (row, label, profile) in enumerate(zip(probs, labels, profiles, strict=True)):
        prediction_id = uuid.uuid4().hex
        name = model.classes[label]
        confidence = float(row[label])
        predictions.append({
            "prediction_id": prediction_id,
            "label": label,
            "class_name": name,
            "confidence": confidence,
            "probabilities": (
                dict(zip(model.classes, row.tolist(), strict=True)) if with_probabilities else None
            ),
            "explanation": None if explanations is None else explanations[i],
        })  # fmt: skip
        state.remember(prediction_id, len(model.classes))
        counters[label].inc()
        state.confidence[model.kind].observe(confidence)
        if telemetry is not None:
            telemetry.submit(
                Prediction(prediction_id, now, endpoint, model.version, label, name,
                           confidence, per_item_ms, profile)
            )  # fmt: skip
            if capture and inputs is not None and random.random() < capture:
                telemetry.submit(Capture(prediction_id, now, _encode_input(inputs[i])))
    return ORJSONResponse({
        "predictions": predictions, "model_version": model.version, "inference_ms": inference_ms,
    })  # fmt: skip


def _encode_input(item: Any) -> str:
    """A text as is; an image (3 x 32 x 32 in [0, 1]) as base64 of its bytes (3,072)."""
    if isinstance(item, str):
        return item
    pixels = np.clip(np.rint(np.asarray(item) * 255.0), 0, 255).astype(np.uint8)
    return base64.b64encode(pixels.tobytes()).decode()


async def _read_images(request: Request, settings: ServeSettings) -> tuple[Any, bool]:
    """N x 3 x 32 x 32 float32 in [0, 1] from JSON arrays, a multipart upload or a raw image."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = schemas.ImageRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise HTTPException(422, errors) from None
        try:
            arrays = np.asarray(_items(body), dtype=np.float32)
        except ValueError:  # ragged nesting: rows or pixels of different lengths
            arrays = np.zeros((0,), dtype=np.float32)
        if arrays.ndim != 4 or arrays.shape[1:] != (32, 32, 3):
            got = arrays.shape[1:] if arrays.ndim > 1 else "ragged or empty arrays"
            raise HTTPException(422, f"images must be 32 x 32 x 3 (height, width, RGB); got {got}")
        if arrays.max(initial=0.0) > 1.0:
            arrays = arrays / 255.0
        if settings.log_inputs:
            log.info("predict/image inputs: %s", arrays.tolist())
        return np.ascontiguousarray(arrays.transpose(0, 3, 1, 2)), body.probabilities
    if kind == "multipart/form-data":
        form = await request.form()
        files = form.getlist("file")
        if not files:
            raise HTTPException(422, "upload one or more images in the form field `file`")
        blobs = []
        for item in files:
            if isinstance(item, str):
                raise HTTPException(422, "the form field `file` must hold files, not text")
            blobs.append(await item.read())
        want = str(form.get("probabilities", "false")).lower() == "true"
        return np.stack([_decode(b) for b in blobs]), want
    if kind in IMAGE_TYPES:
        return _decode(await request.body())[None], False
    raise HTTPException(
        415,
        f"content type {kind or '(none)'} is not accepted: send application/json (arrays), "
        "multipart/form-data (field `file`), image/png or image/jpeg",
    )


def _decode(blob: bytes) -> NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as image:
            if image.format not in ("PNG", "JPEG"):
                raise HTTPException(422, f"images must be PNG or JPEG, not {image.format}")
            if image.size != (32, 32):
                raise HTTPException(422, f"images must be 32 x 32 pixels; got {image.size}")
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise HTTPException(
            422, f"the upload is not a readable PNG or JPEG image ({exc})"
        ) from None
    return np.ascontiguousarray(array.transpose(2, 0, 1))


async def _reload(state: ServerState, wanted: Pointer) -> dict[str, str]:
    """Load each wanted model beside the serving one; swap only when all loaded."""
    sources = wanted.sources()
    if not sources:
        raise HTTPException(422, "name a text_model and/or an image_model to load")
    async with state.reload_lock:
        loaded = {}
        for kind, source in sources.items():
            try:
                loaded[kind] = await run_in_threadpool(load, str(source), kind)
            except MltrailError as exc:
                log.warning("reload of %s from %s failed, still serving the old model: %s",
                            kind, source, exc)  # fmt: skip
                raise HTTPException(
                    409, f"reload failed, still serving the old model: {exc}"
                ) from None
        state.models.update(loaded)  # a request sees the old model or the new one, whole
        for kind, model in loaded.items():
            log.info("now serving %s model %s from %s (%s)", kind, model.version, model.source,
                     model.runtime)  # fmt: skip
    return {k: m.version for k, m in loaded.items()}


async def _watch_pointer(state: ServerState, every_s: float = 1.0) -> None:
    """Reload when the pointer file changes: ``{"text": <source>, "image": <source>}``."""
    path = Path(str(state.settings.pointer_file))
    # The file as it was at start is what the server was configured with; a change, or its
    # first appearance, is a new pointer.
    state.pointer_mtime = path.stat().st_mtime if path.exists() else None
    while True:
        with contextlib.suppress(FileNotFoundError):
            mtime = path.stat().st_mtime
            if mtime != state.pointer_mtime:
                state.pointer_mtime = mtime
                try:
                    await _reload(state, Pointer.read(path))
                except (MltrailError, HTTPException) as exc:
                    log.warning("pointer file %s: %s", path, getattr(exc, "detail", exc))
        await asyncio.sleep(every_s)
