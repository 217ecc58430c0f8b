"""``GET /status``: the status page, server-rendered HTML (Jinja2, inline SVG, no JavaScript).

Behind the API key when one is set. A browser cannot send ``Authorization: Bearer`` by itself,
and a key in the URL (``?key=``) would land in history, logs and Referer headers, so the page
takes either:

- the header, as every other route (a reverse proxy that authenticates users can add it);
- a cookie that ``POST /status/login`` sets after a form asks for the key. The cookie holds
  not the key but an HMAC of it (it opens the page, never the API), and is ``HttpOnly``,
  ``SameSite=Strict``, limited to ``/status`` and ``Secure`` over HTTPS; it lasts
  :data:`COOKIE_MAX_AGE_S`, and changing the key invalidates it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import cache
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mltrail import __version__
from mltrail.serve.deps import BearerDep, SettingsDep, StateDep
from mltrail.serve.status_page import gather

router = APIRouter(tags=["status page"])
COOKIE = "mltrail_status"
COOKIE_MAX_AGE_S = 8 * 3600


@cache
def _templates() -> object:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("mltrail.serve", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    return env


def _render(name: str, **context: object) -> str:
    from jinja2 import Environment

    env = _templates()
    assert isinstance(env, Environment)
    return env.get_template(name).render(**context)


def page_token(api_key: str) -> str:
    """What the cookie holds: an HMAC of the key, good for the page only."""
    return hmac.new(api_key.encode(), b"mltrail status page v1", hashlib.sha256).hexdigest()


def _allowed(api_key: str | None, request: Request, bearer: str | None) -> bool:
    if api_key is None:
        return True
    if bearer is not None and hmac.compare_digest(bearer.encode(), api_key.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), page_token(api_key).encode())


def _login(status: int, message: str | None = None) -> HTMLResponse:
    return HTMLResponse(_render("login.html", message=message), status_code=status)


@router.get("/status", response_class=HTMLResponse, include_in_schema=True)
async def status_page(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    given: BearerDep,
    hours: float = Query(24.0, gt=0, le=24 * 90, description="the live figures' period"),
) -> HTMLResponse:
    if not _allowed(settings.api_key, request, None if given is None else given.credentials):
        return _login(401)
    started = time.perf_counter()
    # The store's queries block: off the event loop, as /feedback's lookups.
    views = await run_in_threadpool(gather, state.models.items(), settings, state.store, hours)
    html = _render(
        "status.html",
        views=views,
        hours=hours,
        image_tag=settings.image_tag,
        store=None if state.store is None else state.store.name,
        mltrail_version=__version__,
        now=time.time(),
        gathered_ms=(time.perf_counter() - started) * 1000,
        logout=settings.api_key is not None,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.post("/status/login", response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep) -> Response:
    if settings.api_key is None:
        return RedirectResponse("/status", status_code=303)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0]
    if not hmac.compare_digest(key.encode(), settings.api_key.encode()):
        return _login(401, "wrong key")
    response = RedirectResponse("/status", status_code=303)
    response.set_cookie(
        COOKIE,
        page_token(settings.api_key),
        max_age=COOKIE_MAX_AGE_S,
        path="/status",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/status/logout")
async def logout() -> Response:
    response = RedirectResponse("/status", status_code=303)
    response.delete_cookie(COOKIE, path="/status")
    return response
