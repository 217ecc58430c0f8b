"""``POST /feedback``: the true label of an earlier prediction, into telemetry."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from mltrail.serve import schemas
from mltrail.serve.deps import API_KEY, StateDep
from mltrail.telemetry import Feedback

router = APIRouter(tags=["predict"], dependencies=[API_KEY])


@router.post(
    "/feedback",
    responses={404: {"model": schemas.ErrorResponse, "description": "unknown prediction"}},
)
async def feedback(body: schemas.FeedbackRequest, state: StateDep) -> schemas.FeedbackResponse:
    classes = state.recent.get(body.prediction_id)
    if classes is None:  # older than the in-memory index: ask the store
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
