"""Paths are resolved once, against the folder the command was typed in (mltrail.paths):
environment, params, command line and server settings, before any subprocess or chdir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mltrail.config import MIRROR_ENV, load_params
from mltrail.paths import (
    absolute,
    absolute_source,
    absolute_sqlite_uri,
    absolute_store,
    resolve_environment,
)
from mltrail.serve.settings import load_settings
from tests.conftest import PARAMS, shared_datasets


def test_absolute_forms(tmp_path: Path) -> None:
    assert absolute("data/x", tmp_path) == tmp_path / "data/x"
    assert absolute("/srv/x", tmp_path) == Path("/srv/x")
    assert absolute("~/x", tmp_path) == Path.home() / "x"
    assert absolute_sqlite_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert absolute_sqlite_uri("sqlite:////srv/m.db", tmp_path) == "sqlite:////srv/m.db"
    assert absolute_sqlite_uri("http://host:5000", tmp_path) == "http://host:5000"
    assert absolute_store("telemetry.db", tmp_path) == str(tmp_path / "telemetry.db")
    assert absolute_store("sqlite:///t.db", tmp_path) == f"sqlite:///{tmp_path}/t.db"
    dsn = "postgresql://u@127.0.0.1:5432/db"
    assert absolute_store(dsn, tmp_path) == dsn
    assert absolute_source("models/text/mlflow", tmp_path) == str(tmp_path / "models/text/mlflow")
    for uri in ("runs:/abc/mltrail-model", "models:/mltrail-text@production"):
        assert absolute_source(uri, tmp_path) == uri


def test_environment_paths_become_absolute(tmp_path: Path) -> None:
    env = {
        MIRROR_ENV: "../datasets",
        "MLTRAIL_POINTER_FILE": "releases/serving.json",
        "MLTRAIL_TEXT_MODEL": "models/text/baseline",
        "MLTRAIL_IMAGE_MODEL": "models:/cnn@production",
        "MLTRAIL_TELEMETRY_DSN": "telemetry.db",
        "MLTRAIL_API_KEY": "not-a-path",
    }
    resolve_environment(env, tmp_path)
    assert env[MIRROR_ENV] == str(tmp_path / "../datasets")
    assert env["MLTRAIL_POINTER_FILE"] == str(tmp_path / "releases/serving.json")
    assert env["MLTRAIL_TEXT_MODEL"] == str(tmp_path / "models/text/baseline")
    assert env["MLTRAIL_IMAGE_MODEL"] == "models:/cnn@production"
    assert env["MLTRAIL_TELEMETRY_DSN"] == str(tmp_path / "telemetry.db")
    assert env["MLTRAIL_API_KEY"] == "not-a-path"


def test_params_paths_are_resolved_against_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "mirror")
    overrides = ["text.source.path=in/reviews.csv", "tracking.wandb_dir=."]
    params = load_params(PARAMS, overrides, base=tmp_path)
    assert params.data.mirror == str(tmp_path / "mirror")  # from the environment
    assert params.text.source.path == str(tmp_path / "in/reviews.csv")
    assert params.text.feedback_dir == str(tmp_path / "data/feedback/text")
    assert params.tracking.mlflow_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert params.tracking.journal_dir == str(tmp_path / ".mltrail/runs")
    assert params.tracking.wandb_dir == str(tmp_path / ".")
    assert params.retrain.pointer_file == str(tmp_path / "releases/serving.json")
    # Resolving again (a child process reading them) changes nothing.
    again = load_params(PARAMS, overrides, base=tmp_path / "elsewhere")
    assert again.train_text == params.train_text


def test_server_settings_paths_are_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLTRAIL_TELEMETRY_DSN", raising=False)
    settings = load_settings(None, text_model="models/text/baseline", image_model="runs:/r/m")
    assert settings.text_model == str(tmp_path / "models/text/baseline")
    assert settings.image_model == "runs:/r/m"
    assert settings.telemetry.sqlite_path == str(tmp_path / "telemetry.db")
    assert settings.telemetry.spill_dir == str(tmp_path / ".mltrail/telemetry-spill")


def _mltrail(args: list[str], cwd: Path, mirror: str) -> subprocess.CompletedProcess[str]:
    """``mltrail ARGS`` in a fresh process in ``cwd``, as a user would type it there."""
    env = os.environ | {MIRROR_ENV: mirror, "DVC_NO_ANALYTICS": "1"}
    mltrail = Path(sys.executable).parent / "mltrail"
    return subprocess.run([str(mltrail), *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.shared_data
def test_a_stage_and_the_benchmark_with_a_relative_mirror_from_another_folder(
    tmp_path: Path,
) -> None:
    here = tmp_path / "somewhere" / "else"
    here.mkdir(parents=True)
    mirror = os.path.relpath(shared_datasets().resolve(), here)  # e.g. ../../../shared/datasets
    assert not Path(mirror).is_absolute()

    prepared = _mltrail(
        ["prepare", "text", "--params", str(PARAMS), "--out", "prepared", "--no-progress",
         "--set", "text.sample_rows=300"],
        here, mirror,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    profile = json.loads((here / "prepared/profile.json").read_text())
    assert profile["source"]["file"] == "imdb_reviews.csv.gz"
    # The profile records what the data is, not where this clone keeps it.
    assert "path" not in profile["params"]["source"]
    assert "feedback_dir" not in profile["params"]
    assert str(tmp_path) not in (here / "prepared/profile.json").read_text()

    # The benchmark's cells run in fresh processes inside --work: the relative mirror must
    # have been resolved before they start.
    bench = _mltrail(
        ["bench", "--params", str(PARAMS), "--out", "reports", "--work", "bench", "--tasks",
         "text", "--repeats", "1", "--no-progress", "--set", "bench.text_rows=300",
         "--set", "bench.trackers=[none]", "--set", "bench.paper_style=[]"],
        here, mirror,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    results = json.loads((here / "reports/benchmark.json").read_text())
    assert [c["condition"] for c in results["cells"]] == ["none"]
    assert results["cells"][0]["metrics"]["accuracy"] > 0.5
