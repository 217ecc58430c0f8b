from __future__ import annotations

from pathlib import Path

from mltrail.stages.clean_models import clean_models, declared_outputs

PIPELINE = """
stages:
  train_text_baseline:
    cmd: x
    outs: [models/text/baseline]
  train_cifar10_mlflow:
    cmd: x
    outs:
      - models/cifar10/mlflow:
          cache: true
    metrics:
      - models/cifar10/mlflow/metrics.json:
          cache: false
  templated:
    cmd: x
    outs: ["models/${item}"]
"""


def _tree(root: Path, *paths: str) -> None:
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def test_declared_outputs_reads_every_kind(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    outs = declared_outputs(tmp_path / "dvc.yaml")
    assert {p.relative_to(tmp_path).as_posix() for p in outs} == {
        "models/text/baseline",
        "models/cifar10/mlflow",
        "models/cifar10/mlflow/metrics.json",
    }


def test_removes_only_what_no_stage_produces(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    models = tmp_path / "models"
    _tree(
        models,
        "text/baseline/model.npz",
        "text/old_experiment/model.npz",
        "text/.baseline.abc.tmp/partial",
        "cifar10/mlflow/model.pt",
        "retired_task/x/model.pt",
        "text/handmade/model.npz",
    )
    removed = clean_models(models, tmp_path / "dvc.yaml", keep=["text/handmade"])
    assert {p.relative_to(models).as_posix() for p in removed} == {
        "text/old_experiment",
        "text/.baseline.abc.tmp",
        "retired_task",
    }
    assert (models / "text/baseline/model.npz").exists()
    assert (models / "cifar10/mlflow/model.pt").exists()
    assert (models / "text/handmade/model.npz").exists()
    assert not (models / "retired_task").exists()


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    _tree(tmp_path / "models", "stale/model.bin")
    removed = clean_models(tmp_path / "models", tmp_path / "dvc.yaml", dry_run=True)
    assert [p.name for p in removed] == ["stale"]
    assert (tmp_path / "models/stale/model.bin").exists()


def test_missing_models_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    assert clean_models(tmp_path / "models", tmp_path / "dvc.yaml") == []
