"""The routes' dependencies, typed: ``state: StateDep`` in a route's signature is the server's
state, and so on. Each is a cheap ``async`` function (a sync one would cost a thread hop per
request), resolved once per request however many routes and dependencies ask for it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


BEARER = HTTPBearer(
    auto_error=False,  # no key configured: open; a wrong one is our own 401, below
    description="`Authorization: Bearer <key>`: `api_key` (`admin_api_key` for /admin/*)",
)
"""The bearer scheme, declared in the OpenAPI schema so that /docs' Authorize sends it."""

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def _check(key: str | None, given: HTTPAuthorizationCredentials | None) -> None:
    """401 unless ``given`` is ``key`` (no key: open)."""
    if key is None:
        return
    token = "" if given is None else given.credentials
    if not hmac.compare_digest(token.encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


async def require_key(settings: SettingsDep, given: BearerDep) -> None:
    """401 unless the request carries ``Authorization: Bearer <api_key>``."""
    _check(settings.api_key, given)


async def require_admin_key(settings: SettingsDep, given: BearerDep) -> None:
    """401 unless the request carries the admin key (``admin_api_key``, else ``api_key``)."""
    _check(settings.admin_api_key or settings.api_key, given)


API_KEY = Depends(require_key)
"""For a router's ``dependencies``: its routes need the API key."""

ADMIN_KEY = Depends(require_admin_key)
"""For the admin router: its routes need the admin key."""
