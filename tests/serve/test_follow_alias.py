"""A server that follows ``models:/mltrail-text@production``: a real MLflow tracking server (the
registry), text models trained and tracked in it, `mltrail promote` moving the alias, and a real
`mltrail serve` under a steady request loop. No pointer file and no ``--server`` reach it: the
server asks the registry itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mltrail.config import Params, load_params
from mltrail.errors import ParamsError
from mltrail.release.promote import promote
from mltrail.serve.follow import followed_alias
from mltrail.serve.settings import load_settings
from tests.conftest import PARAMS, free_port
from tests.serve.conftest import Server, start_server
from tests.tracking.test_server import Server as MlflowServer

ALIAS_URI = "models:/mltrail-text@production"
BIN = Path(sys.executable).parent


# ---- settings ---------------------------------------------------------------------------------


def test_alias_poll_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().alias_poll_s == 5.0
    monkeypatch.setenv("MLTRAIL_ALIAS_POLL_S", "0.5")
    assert load_settings().alias_poll_s == 0.5
    monkeypatch.setenv("MLTRAIL_ALIAS_POLL_S", "0")
    assert load_settings().alias_poll_s == 0.0  # off (the server below checks it follows nothing)
    assert load_settings(alias_poll_s=2).alias_poll_s == 2.0  # the command line's wins


@pytest.mark.parametrize("how", ["env", "argument"])
def test_a_negative_alias_poll_is_refused(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    overrides: dict[str, object] = {}
    if how == "env":
        monkeypatch.setenv("MLTRAIL_ALIAS_POLL_S", "-1")
    else:
        overrides["alias_poll_s"] = -1
    with pytest.raises(ParamsError, match=r"alias_poll_s: .*-1\.0 is negative.*or 0 to stop"):
        load_settings(None, **overrides)


def test_only_an_alias_is_followed() -> None:
    assert followed_alias("models:/mltrail-text@production") == ("mltrail-text", "production")
    assert followed_alias("models:/mltrail-text/3") is None  # a version is fixed
    assert followed_alias("runs:/0a1b/mltrail-model") is None
    assert followed_alias("/srv/releases/text/train_text-1a2b") is None
    assert followed_alias("models:/@production") is None


# ---- a real registry, real servers ------------------------------------------------------------


@dataclass
class Traffic:
    """Requests sent one after another from a thread: (time answered, status, model_version)."""

    server: Server
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with self.server.client() as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/predict/text", json={"text": "a wonderful moving film"})
                    version = r.json().get("model_version", "") if r.status_code == 200 else ""
                    self.answers.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.02)

    def failed(self) -> list[object]:
        return [*self.errors, *(a for a in self.answers if a[1] != 200)]

    def first(self, version: str, after: float) -> float | None:
        return next((t for t, _, v in self.answers if v == version and t >= after), None)

    def last_version(self) -> str:
        return self.answers[-1][2]


def _train(params: Params, uri: str, data: Path, out: Path) -> str:
    from mltrail.stages import train_text

    return train_text.run(params, uri, data, out).model_version


def _wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _registry_info(server: Server) -> dict[str, object]:
    with server.client() as client:
        model = client.get("/version").json()["models"]["text"]
    return {k: model[k] for k in ("version", "registry_version", "follows", "source")}


def _tampered_version(uri: str, model_dir: Path, tmp: Path) -> str:
    """Register (by hand: `mltrail promote` refuses it) a copy of ``model_dir`` whose model file
    no longer matches its manifest, and give it the alias."""
    from mlflow.tracking import MlflowClient

    tampered = tmp / "tampered"
    shutil.copytree(model_dir, tampered)
    with (tampered / "model.npz").open("ab") as f:
        f.write(b"poison")
    client = MlflowClient(uri)
    experiment = client.create_experiment("tampered")
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(tampered), "mltrail-model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(
        "mltrail-text", f"runs:/{run.info.run_id}/mltrail-model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("mltrail-text", "production", version.version)
    return str(version.version)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[MlflowServer]:
    root = tmp_path / "registry"
    root.mkdir()
    server = MlflowServer(root, free_port())
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_server_follows_the_production_alias(
    registry: MlflowServer, text_data: Path, tmp_path: Path
) -> None:
    overrides = [
        f"tracking.journal_dir={tmp_path / 'journal'}",
        "tracking.wait=true",
        f"retrain.releases_dir={tmp_path / 'releases'}",
        f"retrain.pointer_file={tmp_path / 'releases' / 'serving.json'}",
    ]
    params = load_params(PARAMS, overrides)
    first = _train(params, registry.uri, text_data, tmp_path / "model1")
    second_params = load_params(PARAMS, [*overrides, "train_text.C=0.05"])
    second = _train(second_params, registry.uri, text_data, tmp_path / "model2")
    assert first != second
    assert promote(tmp_path / "model1", params, {"test": 1})["registry"]["version"] == "1"

    env = {"MLFLOW_TRACKING_URI": registry.uri}
    models = {"text": tmp_path, "image": tmp_path}  # replaced by `common`
    common = {"text_model": ALIAS_URI, "image_model": None}
    # No pointer file is ever written for these servers: releases/serving.json is elsewhere.
    follower = start_server(tmp_path / "follower", models, environ=env, alias_poll_s=0.5, **common)
    fixed = start_server(tmp_path / "fixed", models, environ=env, alias_poll_s=0, **common)
    traffic = Traffic(follower)
    loop = threading.Thread(target=traffic.run, daemon=True)
    loop.start()
    try:
        assert _registry_info(follower) == {
            "version": first, "registry_version": "1", "follows": ALIAS_URI, "source": ALIAS_URI,
        }  # fmt: skip
        _wait_for(lambda: len(traffic.answers) > 20, 30, "the request loop got no answers")

        # 1. `mltrail promote` (the CLI, no --server) moves the alias to version 2.
        result = subprocess.run(
            [str(BIN / "mltrail"), "promote", str(tmp_path / "model2"), "--params", str(PARAMS),
             *(a for o in overrides for a in ("--set", o))],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{ALIAS_URI} = version 2" in result.stdout
        promoted = time.monotonic()
        _wait_for(lambda: traffic.first(second, promoted) is not None, 10, "v2 not served in 10 s")
        answered = traffic.first(second, promoted)
        assert answered is not None and answered - promoted < 10
        assert traffic.failed() == []  # nothing refused or dropped during the swap
        assert _registry_info(follower)["registry_version"] == "2"
        with follower.client() as client:
            scraped = client.get("/metrics").text
        assert (
            f'mltrail_model_info{{kind="text",registry_version="2",version="{second}"}} 1.0'
            in scraped
        )

        # 2. A tampered version 3: refused once, version 2 keeps serving.
        assert _tampered_version(registry.uri, tmp_path / "model2", tmp_path) == "3"
        time.sleep(4)  # eight polls
        log = follower.log.read_text()
        refusals = [line for line in log.splitlines() if "names version 3, which cannot" in line]
        assert len(refusals) == 1, log[-4000:]
        assert "model.npz is missing or differs from its manifest's sha256" in refusals[0]
        assert "still serving version 2" in refusals[0]
        assert _registry_info(follower)["registry_version"] == "2"
        assert traffic.last_version() == second and traffic.failed() == []

        # 3. The registry goes down: the server keeps answering, says so once.
        registry.stop()
        time.sleep(3)
        answered_while_down = len(traffic.answers)
        time.sleep(1)
        assert len(traffic.answers) > answered_while_down and traffic.failed() == []
        log = follower.log.read_text()
        assert log.count(f"following {ALIAS_URI}: ") == 1, log[-4000:]

        # 4. Back: a later promotion (model 1 again, as version 4) is picked up.
        registry.start()
        assert promote(tmp_path / "model1", params, {"test": 4})["registry"]["version"] == "4"
        promoted = time.monotonic()
        _wait_for(lambda: traffic.first(first, promoted) is not None, 15, "v4 not served")
        assert _registry_info(follower)["registry_version"] == "4"
        assert "the registry answers again" in follower.log.read_text()
        assert traffic.failed() == []

        # alias_poll_s=0: the second server never asked again, and serves version 1 still.
        assert _registry_info(fixed) == {
            "version": first, "registry_version": "1", "follows": None, "source": ALIAS_URI,
        }  # fmt: skip
        assert "now names version" not in fixed.log.read_text()
    finally:
        traffic.stop.set()
        loop.join(timeout=30)
        follower.stop()
        fixed.stop()
    assert len(traffic.answers) > 100
