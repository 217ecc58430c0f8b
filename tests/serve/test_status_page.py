"""``GET /status`` over HTTP on the real server (the browser test drives the same page in
Chromium): the API key by header or by the login form's cookie, and everything shown escaped."""

from __future__ import annotations

import json
import time

import httpx

from mltrail.serve.routers.page import COOKIE, page_token
from tests.serve.conftest import API_KEY, Server


def test_the_page_needs_the_key_by_header_or_by_the_login_cookie(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        r = anonymous.get("/status")
        assert r.status_code == 401 and 'name="key"' in r.text  # the login form
        r = anonymous.post("/status/login", data={"key": "wrong"})
        assert r.status_code == 401 and "wrong key" in r.text
        r = anonymous.post("/status/login", data={"key": API_KEY})
        assert r.status_code == 303 and r.headers["location"] == "/status"
        cookie = r.headers["set-cookie"]
        assert f"{COOKIE}={page_token(API_KEY)}" in cookie
        assert API_KEY not in cookie  # an HMAC of the key, not the key
        for attribute in ("HttpOnly", "Path=/status", "SameSite=strict", "Max-Age=28800"):
            assert attribute.lower() in cookie.lower()
        page = anonymous.get("/status")  # the client kept the cookie
        assert page.status_code == 200 and "text model" in page.text
        # The cookie opens the page, never the API.
        assert anonymous.get("/version").status_code == 401
        assert anonymous.post("/status/logout").status_code == 303
        assert anonymous.get("/status").status_code == 401
    with server.client() as client:  # the bearer header, as every route
        page = client.get("/status")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        version = client.get("/version").json()["models"]["text"]["version"]
        assert version in page.text and "mltrail:test" in page.text


def test_everything_shown_is_escaped(server: Server) -> None:
    hostile = "<script>alert(1)</script>"
    decisions = server.workdir / "monitoring" / "text" / "decisions.jsonl"
    decisions.parent.mkdir(parents=True, exist_ok=True)
    record = {"time": time.time(), "task": "text", "decision": "warn", "model_version": hostile,
              "predictions": 1, "reasons": [{"level": "warn", "check": "drift",
              "message": hostile}], "drift": []}  # fmt: skip
    decisions.write_text(json.dumps(record) + "\n{cut short")
    with server.client() as client:
        page = client.get("/status", params={"hours": 1}).text
    assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") == 2  # the version and the reason


def test_a_bad_period_is_a_clear_422(server: Server) -> None:
    with server.client() as client:
        r = client.get("/status", params={"hours": -1})
    assert r.status_code == 422 and "hours" in r.text
