"""``POST /admin/reload``: serve other models, loaded beside the serving ones and swapped in.
Behind the admin key (``admin_api_key``, else ``api_key``)."""

from __future__ import annotations

from fastapi import APIRouter

from mltrail.contracts.pointer import Pointer
from mltrail.serve import schemas
from mltrail.serve.deps import ADMIN_KEY, StateDep
from mltrail.serve.reload import reload

router = APIRouter(tags=["admin"], dependencies=[ADMIN_KEY])


@router.post(
    "/admin/reload",
    responses={409: {"model": schemas.ErrorResponse, "description": "reload failed"}},
)
async def admin_reload(body: schemas.ReloadRequest, state: StateDep) -> schemas.ReloadResponse:
    wanted = Pointer(text=body.text_model, image=body.image_model)
    return schemas.ReloadResponse(reloaded=await reload(state, wanted))
