"""``POST /feedback``: the true label of an earlier prediction, into telemetry.

A label must be a class index of the model that made the prediction. A prediction this
server made since it started is in its memory with its class count; an older one (before a
restart, or pushed out of memory) is looked up in the store, whose record names the endpoint
and the model version. The classes are then those of the served model with that version,
else those of the model now serving that endpoint's kind: the classes are the task's (a
model version of a task has the task's classes; the record does not hold them), so any of
its models knows them. With no model of that kind loaded, the label cannot be checked and
the feedback is refused (409) rather than stored unchecked.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from mltrail.contracts.tasks import TASKS
from mltrail.serve import schemas
from mltrail.serve.deps import API_KEY, StateDep
from mltrail.serve.state import ServerState
from mltrail.telemetry import Feedback

router = APIRouter(tags=["predict"], dependencies=[API_KEY])
KIND_OF_ENDPOINT = {spec.endpoint: spec.kind for spec in TASKS.values()}


@router.post(
    "/feedback",
    responses={
        404: {"model": schemas.ErrorResponse, "description": "unknown prediction"},
        409: {"model": schemas.ErrorResponse, "description": "no model to check the label"},
    },
)
async def feedback(body: schemas.FeedbackRequest, state: StateDep) -> schemas.FeedbackResponse:
    classes = state.recent.get(body.prediction_id)
    if classes is None:  # older than the in-memory index: ask the store
        classes = await _stored_classes(state, body.prediction_id)
    if body.label >= classes:
        raise HTTPException(422, f"label {body.label} is not a class index (0-{classes - 1})")
    assert state.telemetry is not None
    state.telemetry.submit(Feedback(body.prediction_id, time.time(), body.label))
    return schemas.FeedbackResponse(prediction_id=body.prediction_id, accepted=True)


async def _stored_classes(state: ServerState, prediction_id: str) -> int:
    """The class count of the model that made the stored prediction ``prediction_id``."""
    store = state.store
    found = None
    if store is not None:
        found = await run_in_threadpool(store.find_prediction, prediction_id)
    if found is None:
        raise HTTPException(404, f"no prediction with id {prediction_id!r}")
    served = state.models.items()
    for _, model in served:
        if model.version == found.model_version:
            return len(model.classes)
    kind = KIND_OF_ENDPOINT.get(found.endpoint)
    for served_kind, model in served:
        if served_kind == kind:
            return len(model.classes)
    raise HTTPException(
        409,
        f"prediction {prediction_id!r} was made at {found.endpoint}, and no model of that "
        "kind is loaded to check the label against",
    )
