"""The write-only sinks (W&B, MLflow) and the sinks the settings ask for."""

from __future__ import annotations

from pathlib import Path

import pytest

from mltrail.errors import ParamsError
from mltrail.telemetry import Telemetry, build_sinks
from tests.telemetry.helpers import prediction, settings


def test_the_wandb_and_mlflow_sinks_hold_the_records(tmp_path: Path) -> None:
    """The real clients: W&B offline (read back with W&B's own reader), MLflow's store."""
    from mlflow.tracking import MlflowClient

    from mltrail.bench.tool_runtime import wandb_inspect

    chosen = settings(
        tmp_path,
        sinks=["wandb", "mlflow"],
        wandb_dir=str(tmp_path),
        mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    telemetry = Telemetry(chosen, build_sinks(chosen))
    telemetry.start()
    for i in range(5):
        telemetry.submit(prediction(i))
    telemetry.close()
    assert telemetry.counters.exported == {"wandb": 5, "mlflow": 5}
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    found = wandb_inspect(run_dir)
    assert found["state"] == "finished" and found["summary"]["confidence"] == 0.9
    assert found["summary"]["input/chars"] == 10.0
    client = MlflowClient(chosen.mlflow_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "mltrail-serving"]
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "prediction")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0, 1, 0, 1, 0]
    assert run.info.status == "FINISHED"


def test_the_store_sinks_come_from_the_store_registry(tmp_path: Path) -> None:
    dsn = "postgresql+psycopg://u@127.0.0.1:5432/telemetry"
    sinks = build_sinks(settings(tmp_path, sinks=["postgres", "sqlite"], postgres_dsn=dsn))
    assert [s.name for s in sinks] == ["postgres", "sqlite"]
    assert not (tmp_path / "t.db").exists()  # nothing is opened before the first batch
    with pytest.raises(ParamsError, match=r"needs telemetry\.postgres_dsn"):
        build_sinks(settings(tmp_path, sinks=["postgres"]))
    with pytest.raises(ParamsError, match="sink postgres was given a sqlite store"):
        build_sinks(settings(tmp_path, sinks=["postgres"], postgres_dsn=str(tmp_path / "x.db")))
