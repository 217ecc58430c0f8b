"""Contract tests over every backend, then read-back from each tool's own store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mltrail.stages.train_text as train_text
from mltrail.config import TrackingParams
from mltrail.models.text import load_text_model
from mltrail.tracking.base import ModelRef, RunStart, Tracker
from mltrail.tracking.registry import NAMES, BackendSpec

BACKENDS = list(NAMES)  # every registered backend: a new one is tested by being registered


def _tracker(name: str, workdir: Path) -> Tracker:
    settings = TrackingParams(
        mlflow_uri=f"sqlite:///{workdir / 'mlflow.db'}", wandb_dir=str(workdir)
    )
    target = {"none": "", "mlflow": settings.mlflow_uri, "wandb": "contract"}[name]
    return BackendSpec(name, target).build(settings)


@pytest.fixture
def text_model(workdir: Path, text_data: Path, make_params: Callable[..., object]) -> ModelRef:
    out = workdir / "model"
    manifest = train_text.run(make_params(), "none", text_data, out)  # type: ignore[arg-type]
    return ModelRef(
        out,
        "sklearn",
        "model.npz",
        manifest.model.sha256,
        {"pip_requirements": ["scikit-learn"]},
    )


def _exercise(tracker: Tracker, model: ModelRef, start: float) -> dict[str, str]:
    tracker.start(RunStart("a" * 32, "contract-run", "contract", start, {"task": "text"}))
    tracker.log_params({"C": 1.0, "ngram_max": 1, "name": "tfidf"})
    for step in (1, 2, 3):
        tracker.log_metrics({"loss": 1.0 / step}, step, start + step)
    tracker.log_metrics({"accuracy": 0.75}, None, start + 4)
    tracker.set_tags({"git_commit": "abc123"})
    tracker.log_artifact(model.path / "per_class.json")
    tracker.log_model(model)
    return tracker.finish("finished", start + 5)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_takes_a_whole_run(name: str, workdir: Path, text_model: ModelRef) -> None:
    ref = _exercise(_tracker(name, workdir), text_model, time.time() - 10)
    assert ref["run_id"]
    assert isinstance(ref["uri"], str)


def test_mlflow_store_holds_the_run_and_a_loadable_model(
    workdir: Path, text_model: ModelRef
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    start = time.time() - 10
    ref = _exercise(_tracker("mlflow", workdir), text_model, start)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.get_run(ref["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.start_time == int(start * 1000) and run.info.end_time == int((start + 5) * 1000)
    assert run.data.params == {"C": "1.0", "ngram_max": "1", "name": "tfidf"}
    assert run.data.metrics["accuracy"] == 0.75
    history = client.get_metric_history(ref["run_id"], "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert run.data.tags["git_commit"] == "abc123" and run.data.tags["mltrail.run_id"] == "a" * 32
    assert "per_class.json" in [a.path for a in client.list_artifacts(ref["run_id"])]
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{ref['run_id']}/model")
    texts = ["a good film number 3", "a bad film number 8", "review of class 1"]
    local = load_text_model(text_model.path / "model.npz")
    assert np.array_equal(np.asarray(loaded.predict(texts)), local.predict(texts))


def test_wandb_offline_files_hold_config_summary_history_and_model(
    workdir: Path, text_model: ModelRef
) -> None:
    ref = _exercise(_tracker("wandb", workdir), text_model, time.time() - 10)
    run_dir = Path(ref["run_dir"])
    assert run_dir.parent == workdir / "wandb" and run_dir.name.startswith("offline-run-")
    records = _wandb_records(run_dir)
    summary = _wandb_summary(run_dir)
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert summary["config"]["C"] == 1.0 and summary["config"]["name"] == "tfidf"
    assert summary["summary"]["accuracy"] == 0.75
    history = [r["history"] for r in records if r["type"] == "history"]
    assert [h["step"]["num"] for h in history] == [1, 2, 3]
    assert [h["item"]["loss"] for h in history] == pytest.approx([1.0, 0.5, 1 / 3])
    models = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert [a["type"] for a in models] == ["model"]
    files = {c["path"]: c["local_path"] for c in models[0]["manifest"]["contents"]}
    assert "model.npz" in files
    assert all(p.startswith(str(workdir)) for p in files.values())  # staged inside the project


def _wandb_summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(_leet(["--summary", "--json", str(run_dir)]))
    return summary


def _wandb_records(run_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in _leet(["--json", str(run_dir)]).splitlines() if line]


def _leet(args: list[str]) -> str:
    """W&B's own reader of offline run files (``wandb leet inspect``)."""
    wandb = Path(sys.executable).parent / "wandb"
    return subprocess.run(
        [str(wandb), "leet", "inspect", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
