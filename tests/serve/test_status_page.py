"""``GET /status`` over HTTP on the real server (the browser test drives the same page in
Chromium): the API key by header or by the login form's cookie, and everything shown escaped."""

from __future__ import annotations

import json
import time
from pathlib import Path

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


def test_tracker_runs_link_to_the_mlflow_ui_from_the_journal(tmp_path: Path) -> None:
    from mltrail.contracts.manifest import Manifest
    from mltrail.serve.status_page import tracker_runs
    from mltrail.tracking.journal import state_path
    from tests.monitor.test_audit import _MANIFEST

    journal = tmp_path / "run1"
    journal.mkdir()
    done = {"status": "done", "run_id": "abc123", "experiment_id": "7", "uri": "runs:/abc123"}
    state_path(journal, "mlflow").write_text(json.dumps(done))
    data = json.loads(_MANIFEST)
    backends = {"mlflow": "http://mlflow.internal:5000/", "wandb": "proj"}
    data["tracking"] = {"run_id": "r1", "journal": str(journal), "backends": backends}
    manifest = Manifest.from_json(data)
    mlflow, wandb = tracker_runs(manifest, None)
    assert (mlflow.run_id, mlflow.state) == ("abc123", "done")
    assert mlflow.url == "http://mlflow.internal:5000/#/experiments/7/runs/abc123"
    assert (wandb.run_id, wandb.url) == (None, None)
    assert wandb.state == "unknown here (journal not on this machine)"
    # A local store has no web page: a link only with mlflow_ui_url.
    data["tracking"]["backends"] = {"mlflow": "sqlite:///mlflow.db"}
    [local] = tracker_runs(Manifest.from_json(data), None)
    assert local.url is None and local.run_id == "abc123"
    [linked] = tracker_runs(Manifest.from_json(data), "https://mlflow.example")
    assert linked.url == "https://mlflow.example/#/experiments/7/runs/abc123"
