"""The DVC pipeline end to end, on the real data with small sizes, in a copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mltrail.config import MIRROR_ENV
from tests.conftest import copy_repository, set_params, shared_datasets

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _run(args: list[str], cwd: Path) -> str:
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        MIRROR_ENV: str(shared_datasets()),
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh git repository holding the files this repository tracks."""
    root = copy_repository(tmp_path_factory.mktemp("project"))
    set_params(
        root,
        text={"sample_rows": 2000},
        cifar10={"train_size": 2000, "test_size": 500},
        train_cifar10={"epochs": 1},
        tracking={"wait": True, "retry_for_s": 0},  # exports finish inside each stage
        bench={"text_rows": 300, "cifar10_train_size": 200, "cifar10_test_size": 100},
    )
    return root


STAGES = [
    "prepare_data_text", "train_text_baseline", "train_text_mlflow", "train_text_wandb",
    "prepare_cifar10", "train_cifar10_baseline", "train_cifar10_mlflow", "train_cifar10_wandb",
    "bench", "clean_models",
]  # fmt: skip


def test_repro_runs_every_stage_then_is_a_no_op(project: Path) -> None:
    out = _run(["dvc", "repro"], project)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    assert (project / "data/prepared/text/train.parquet").is_file()
    assert (project / "data/prepared/cifar10/train.npz").is_file()
    for task in ("text", "cifar10"):
        for tracker in ("baseline", "mlflow", "wandb"):
            assert (project / f"models/{task}/{tracker}/manifest.json").is_file()
    again = _run(["dvc", "repro"], project)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again


def test_the_trackers_hold_the_pipeline_runs(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.info.run_name for r in runs) == ["train_cifar10_mlflow", "train_text_mlflow"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len(list((project / "wandb").glob("offline-run-*"))) == 2


def test_metrics_and_plots_show(project: Path) -> None:
    metrics = _run(["dvc", "metrics", "show", "--json"], project)
    assert "models/text/mlflow/metrics.json" in metrics and "f1_macro" in metrics
    assert "models/cifar10/baseline/metrics.json" in metrics and "test_loss" in metrics
    _run(["dvc", "plots", "show", "-o", str(project / "plots")], project)
    assert (project / "plots" / "index.html").is_file()


def test_text_param_change_reruns_only_the_text_stages(project: Path) -> None:
    set_params(project, text={"seed": 7})
    out = _run(["dvc", "repro"], project)
    assert "Running stage 'prepare_data_text'" in out
    assert "Running stage 'train_text_baseline'" in out
    assert "Running stage 'prepare_cifar10'" not in out
    assert "Running stage 'train_cifar10_baseline'" not in out
    assert "Running stage 'clean_models'" not in out


def test_push_and_pull_through_the_local_remote(project: Path) -> None:
    profile = (project / "data/prepared/text/profile.json").read_bytes()
    _run(["dvc", "push"], project)
    assert any((project / "dvc-remote").rglob("*"))
    shutil.rmtree(project / "data/prepared")
    shutil.rmtree(project / ".dvc/cache")
    _run(["dvc", "pull"], project)
    assert (project / "data/prepared/text/profile.json").read_bytes() == profile
    assert (project / "data/prepared/cifar10/test.npz").is_file()
