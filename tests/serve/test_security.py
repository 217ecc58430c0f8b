"""Secure by default: an exposed address needs a key (or a loud opt-out), admin takes its own
key, /version sits behind the key, the OpenAPI schema declares the bearer scheme."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mltrail.serve.app import create_app
from mltrail.serve.settings import is_loopback, load_settings
from tests.conftest import free_port
from tests.serve.conftest import API_KEY, BIN, start_server

ADMIN_KEY = "admin-key-456"


def _serve_exposed(
    tmp_path: Path, model_dirs: dict[str, Path], env: dict[str, str], **settings: object
) -> subprocess.CompletedProcess[str]:
    """``mltrail serve --host 0.0.0.0`` as the image runs it; it must exit at once."""
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"text_model": str(model_dirs["text"])} | settings))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")} | env
    command = [str(BIN / "mltrail"), "serve", "--settings", str(path),
               "--host", "0.0.0.0", "--port", str(free_port())]  # fmt: skip
    try:
        return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the server started on 0.0.0.0 without an API key")


@pytest.mark.parametrize(
    ("env", "settings"),
    [({}, {}), ({"MLTRAIL_API_KEY": ""}, {}), ({}, {"api_key": ""}), ({}, {"api_key": "  "})],
    ids=["no key", "empty variable", "empty in the file", "blank in the file"],
)
def test_an_exposed_address_without_a_key_is_refused(
    model_dirs: dict[str, Path], tmp_path: Path, env: dict[str, str], settings: dict[str, object]
) -> None:
    done = _serve_exposed(tmp_path, model_dirs, env, **settings)
    assert done.returncode == 1, done.stderr
    assert "refusing to serve on 0.0.0.0 without an API key" in done.stderr
    assert "MLTRAIL_API_KEY" in done.stderr and "--allow-unauthenticated" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_opt_out_serves_everything_open_and_says_so_at_start(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(tmp_path, model_dirs, environ={"MLTRAIL_API_KEY": None},
                          host="0.0.0.0", allow_unauthenticated=True)  # fmt: skip
    try:
        with server.client(key=None) as c:
            assert c.post("/predict/text", json={"text": "fine"}).status_code == 200
            assert c.get("/version").status_code == 200
    finally:
        server.stop()
    warnings = [line for line in server.log.read_text().splitlines() if "WARNING" in line]
    assert any("WITHOUT AN API KEY" in line and "/admin/reload" in line for line in warnings)


def test_admin_takes_its_own_key_and_the_api_key_does_not_open_it(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(tmp_path, model_dirs, environ={"MLTRAIL_ADMIN_API_KEY": ADMIN_KEY})
    reload = {"text_model": str(model_dirs["text2"])}
    try:
        with server.client(key=API_KEY) as c:
            assert c.post("/admin/reload", json=reload).status_code == 401
            assert c.post("/predict/text", json={"text": "fine"}).status_code == 200
        with server.client(key=ADMIN_KEY) as c:
            assert c.post("/predict/text", json={"text": "fine"}).status_code == 401
            reloaded = c.post("/admin/reload", json=reload)
            assert reloaded.status_code == 200, reloaded.text
    finally:
        server.stop()


def test_promote_and_retrain_send_the_admin_key_when_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mltrail.cli._common import admin_key

    monkeypatch.setenv("MLTRAIL_API_KEY", API_KEY)
    monkeypatch.delenv("MLTRAIL_ADMIN_API_KEY", raising=False)
    assert admin_key() == API_KEY  # the server's own fallback: existing setups keep working
    monkeypatch.setenv("MLTRAIL_ADMIN_API_KEY", ADMIN_KEY)
    assert admin_key() == ADMIN_KEY


def test_the_openapi_schema_declares_the_bearer_scheme_on_guarded_routes() -> None:
    schema = create_app(load_settings(api_key=API_KEY)).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes) == ["HTTPBearer"]
    assert (schemes["HTTPBearer"]["type"], schemes["HTTPBearer"]["scheme"]) == ("http", "bearer")
    guarded = {
        "/predict/text",
        "/predict/image",
        "/feedback",
        "/admin/reload",
        "/version",
        "/status",
    }  # the page: the bearer, or its login cookie
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") == [{"HTTPBearer": []}]) == (path in guarded), path


def test_only_loopback_counts_as_local() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "10.0.0.1", "example.com"]))
