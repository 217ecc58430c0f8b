"""``POST /predict/text`` and ``/predict/image``: predictions, each leaving a telemetry record.

Text prediction runs inline on the event loop (a millisecond of scikit-learn costs less than a
thread hop); the CNN runs in the thread pool. The response is serialized directly, not
validated: checking what :func:`_answer` builds would cost more than the model.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import time
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import ORJSONResponse, Response
from numpy.typing import NDArray
from pydantic import ValidationError

from mltrail.contracts.tasks import kind_spec
from mltrail.models.loading import LoadedModel
from mltrail.serve import schemas
from mltrail.serve.deps import API_KEY, ModelsDep, SettingsDep, StateDep
from mltrail.serve.settings import ServeSettings
from mltrail.serve.state import ServerState
from mltrail.telemetry import Capture, Prediction

log = logging.getLogger("mltrail.serve")
TEXT_ENDPOINT = kind_spec("text").endpoint
IMAGE_ENDPOINT = kind_spec("image").endpoint
IMAGE_TYPES = ("image/png", "image/jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
IMAGE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": schemas.ImageRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "probabilities": {"type": "boolean"},
                    "group": {"type": "string", "maxLength": schemas.MAX_GROUP_CHARS},
                },
                "required": ["file"],
            }
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
"""The image route reads its body itself (three encodings); this is what OpenAPI shows."""

GROUP_WHERE = (
    "with JSON, the body's `group`; with multipart/form-data, the form field `group`; with a "
    "raw image/png or image/jpeg body, the query parameter `?group=`"
)


router = APIRouter(tags=["predict"], dependencies=[API_KEY])


@router.post(TEXT_ENDPOINT, response_model=schemas.PredictResponse, response_class=ORJSONResponse)
async def predict_text(
    body: schemas.TextRequest, state: StateDep, settings: SettingsDep, models: ModelsDep
) -> Response:
    texts = _items(body)
    _check_batch(len(texts), settings.max_batch)
    too_long = [i for i, t in enumerate(texts) if len(t) > settings.max_text_chars]
    if too_long:
        raise HTTPException(
            422,
            f"texts at positions {too_long[:10]} are over {settings.max_text_chars} characters",
        )
    model = models.serving("text")
    started = time.perf_counter()
    probs, profiles = model.predict(texts)
    inference_ms = (time.perf_counter() - started) * 1000
    if settings.log_inputs:
        log.info("predict/text inputs: %r", texts)
    explanations = None
    if body.explain and model.explain is not None:
        explain = model.explain
        explanations = [explain(t, int(p.argmax())) for t, p in zip(texts, probs, strict=True)]
    return _answer(
        state,
        model,
        TEXT_ENDPOINT,
        probs,
        profiles,
        inference_ms,
        body.probabilities,
        explanations,
        texts,
        body.group,
    )


@router.post(
    IMAGE_ENDPOINT,
    response_model=schemas.PredictResponse,
    response_class=ORJSONResponse,
    openapi_extra={"requestBody": IMAGE_BODY},
)
async def predict_image(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    models: ModelsDep,
    group: Annotated[
        str | None,
        Query(
            description="The group of a raw image/png or image/jpeg upload (" + GROUP_WHERE + ")"
        ),
    ] = None,
) -> Response:
    images, want_probs, group = await _read_images(request, settings, group)
    _check_batch(len(images), settings.max_batch)
    model = models.serving("image")
    started = time.perf_counter()
    probs, profiles = await run_in_threadpool(model.predict, images)
    inference_ms = (time.perf_counter() - started) * 1000
    return _answer(
        state,
        model,
        IMAGE_ENDPOINT,
        probs,
        profiles,
        inference_ms,
        want_probs,
        inputs=images,
        group=group,
    )


def _group(value: str | None, where: str) -> str | None:
    """A group given outside a JSON body, checked as the body's field is (422 otherwise)."""
    if value is None:
        return None
    try:
        return schemas.GROUP.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise HTTPException(422, [{**e, "loc": [where, "group"]} for e in errors]) from None


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
    group: str | None = None,
) -> Response:
    """The response (the shape of ``schemas.PredictResponse``), telemetry and metrics."""
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
        predictions.append(
            {
                "prediction_id": prediction_id,
                "label": label,
                "class_name": name,
                "confidence": confidence,
                "probabilities": (
                    dict(zip(model.classes, row.tolist(), strict=True))
                    if with_probabilities
                    else None
                ),
                "explanation": None if explanations is None else explanations[i],
            }
        )
        state.remember(prediction_id, len(model.classes))
        counters[label].inc()
        state.confidence[model.kind].observe(confidence)
        if telemetry is not None:
            telemetry.submit(
                Prediction(
                    prediction_id,
                    now,
                    endpoint,
                    model.version,
                    label,
                    name,
                    confidence,
                    per_item_ms,
                    profile,
                    group,
                )
            )
            if capture and inputs is not None and random.random() < capture:
                telemetry.submit(Capture(prediction_id, now, _encode_input(inputs[i])))
    return ORJSONResponse(
        {
            "predictions": predictions,
            "model_version": model.version,
            "inference_ms": inference_ms,
        }
    )


def _encode_input(item: Any) -> str:
    """A text as is; an image (3 x 32 x 32 in [0, 1]) as base64 of its bytes (3,072)."""
    if isinstance(item, str):
        return item
    pixels = np.clip(np.rint(np.asarray(item) * 255.0), 0, 255).astype(np.uint8)
    return base64.b64encode(pixels.tobytes()).decode()


Images = tuple[Any, bool, str | None]
"""N x 3 x 32 x 32 float32 in [0, 1]; whether probabilities were asked for; the group."""


async def _read_images(
    request: Request, settings: ServeSettings, query_group: str | None
) -> Images:
    """The images of a request as JSON arrays, a multipart upload or a raw image, with what
    came with them (``query_group``: the query's group, which only a raw upload may carry)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        return _decode(await request.body())[None], False, _group(query_group, "query")
    if kind not in ("application/json", "multipart/form-data"):
        raise HTTPException(
            415,
            f"content type {kind or '(none)'} is not accepted: send application/json (arrays), "
            "multipart/form-data (field `file`), image/png or image/jpeg",
        )
    if query_group is not None:
        raise HTTPException(422, f"`group` in the query is for raw uploads: {GROUP_WHERE}")
    if kind == "application/json":
        return await _read_json_images(request, settings)
    return await _read_form_images(request)


async def _read_json_images(request: Request, settings: ServeSettings) -> Images:
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
    arrays = _to_unit_range(arrays)
    if settings.log_inputs:
        log.info("predict/image inputs: %s", arrays.tolist())
    return np.ascontiguousarray(arrays.transpose(0, 3, 1, 2)), body.probabilities, body.group


async def _read_form_images(request: Request) -> Images:
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
    group = form.get("group")
    if group is not None and not isinstance(group, str):
        raise HTTPException(422, "the form field `group` must hold text, not a file")
    return np.stack([_decode(b) for b in blobs]), want, _group(group, "form")


def _to_unit_range(arrays: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each image in [0, 1]: one whose values go above 1 is in [0, 255]. Decided per image, so
    an image is read the same alone and in a batch with images of the other range."""
    in_255 = arrays.reshape(len(arrays), -1).max(axis=1, initial=0.0) > 1.0
    scale = np.where(in_255, np.float32(1 / 255), np.float32(1))
    return arrays * scale[:, None, None, None]


def _decode(blob: bytes) -> NDArray[np.float32]:
    """One 32 x 32 PNG or JPEG as 3 x 32 x 32 in [0, 1]; 422 for anything else.

    Only the PNG and JPEG readers look at the bytes, and the size in the header is checked
    before a pixel is decoded: a small file that claims 50000 x 50000 pixels is refused
    without being expanded. Pillow bounds what it inflates of text and ICC chunks (a
    ``ValueError``), and any other failure to read an upload is the upload's, not a 500.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob), formats=IMAGE_FORMATS) as image:
            if image.format not in IMAGE_FORMATS:
                raise HTTPException(422, f"images must be PNG or JPEG, not {image.format}")
            if image.size != (32, 32):
                raise HTTPException(422, f"images must be 32 x 32 pixels; got {image.size}")
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except HTTPException:
        raise
    except Exception as exc:  # Pillow's errors on hostile bytes are of many types
        raise HTTPException(
            422, f"the upload is not a readable PNG or JPEG image ({type(exc).__name__}: {exc})"
        ) from None
    return np.ascontiguousarray(array.transpose(2, 0, 1))
