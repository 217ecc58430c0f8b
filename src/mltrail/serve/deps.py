"""The routes' dependencies, typed: ``state: StateDep`` in a route's signature is the server's
state, and so on. Each is a cheap ``async`` function (a sync one would cost a thread hop per
request), resolved once per request however many routes and dependencies ask for it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from mltrail.serve.settings import ServeSettings
from mltrail.serve.state import ServedModels, ServerState


async def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.mltrail
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


async def get_settings(state: StateDep) -> ServeSettings:
    return state.settings


SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


async def get_models(state: StateDep) -> ServedModels:
    return state.models


ModelsDep = Annotated[ServedModels, Depends(get_models)]
"""The served models; ``models.serving(kind)`` is 503 when none of that kind is loaded (asked
for in the route, after the request has been validated)."""


async def require_key(request: Request, settings: SettingsDep) -> None:
    """401 unless the request carries ``Authorization: Bearer <api_key>`` (no key set: open)."""
    key = settings.api_key
    if not key:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


API_KEY = Depends(require_key)
"""For a router's ``dependencies``: its routes need the API key."""
