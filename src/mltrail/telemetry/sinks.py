"""The write-only sinks (W&B, MLflow) and the list of sinks the settings ask for.

A sink takes batches from the writer (``mltrail.telemetry.queue``) and cannot be read back;
the stores (``mltrail.telemetry.stores``) are sinks that can. ``wandb`` logs each prediction to
a W&B run (offline by default: the paper's way), ``mlflow`` logs confidence, inference time and
label as metrics of a serving run. Their clients are imported when a sink is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mltrail.errors import ParamsError
from mltrail.telemetry.queue import Sink
from mltrail.telemetry.record import Feedback, Prediction, Record
from mltrail.telemetry.settings import STORE_ENV, TelemetrySettings
from mltrail.telemetry.stores import open_store


class WandbSink:
    """The paper's serving telemetry: each prediction logged to a W&B run (offline here)."""

    name = "wandb"

    def __init__(self, settings: TelemetrySettings) -> None:
        from mltrail.paths import keep_wandb_files_in

        root = Path(settings.wandb_dir).resolve()
        keep_wandb_files_in(root)
        import wandb

        self._run = wandb.init(
            project=settings.wandb_project,
            mode=settings.wandb_mode,
            dir=str(root),
            job_type="serving",
            settings=wandb.Settings(console="off"),
            reinit="create_new",
        )

    def write(self, records: Sequence[Record]) -> None:
        for r in records:
            if isinstance(r, Prediction):
                self._run.log(
                    {
                        "endpoint": r.endpoint,
                        "prediction": r.label,
                        "class_name": r.class_name,
                        "confidence": r.confidence,
                        "inference_ms": r.inference_ms,
                        "model_version": r.model_version,
                        **{f"input/{k}": v for k, v in r.profile.items()},
                    }
                )
            elif isinstance(r, Feedback):
                self._run.log({"feedback_label": r.label})

    def close(self) -> None:
        self._run.finish()


class MlflowSink:
    """A serving run in MLflow: confidence and inference time per prediction, as metrics."""

    name = "mlflow"

    def __init__(self, settings: TelemetrySettings) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(settings.mlflow_uri)
        found = self._client.get_experiment_by_name(settings.mlflow_experiment)
        experiment = (
            found.experiment_id
            if found
            else self._client.create_experiment(settings.mlflow_experiment)
        )
        self._run_id = self._client.create_run(experiment, run_name="serving").info.run_id
        self._step = 0

    def write(self, records: Sequence[Record]) -> None:
        from mlflow.entities import Metric

        metrics = []
        for r in records:
            if isinstance(r, Prediction):
                ms = int(r.time * 1000)
                metrics += [
                    Metric("confidence", r.confidence, ms, self._step),
                    Metric("inference_ms", r.inference_ms, ms, self._step),
                    Metric("prediction", float(r.label), ms, self._step),
                ]
                self._step += 1
        for i in range(0, len(metrics), 999):  # MLflow takes at most 1000 per batch
            self._client.log_batch(self._run_id, metrics=metrics[i : i + 999])

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


def build_sinks(settings: TelemetrySettings) -> list[Sink]:
    """The sinks ``settings.sinks`` names, in that order (nothing is connected yet); the
    stores among them come from the store registry."""
    sinks: list[Sink] = []
    for name in settings.sinks:
        if name == "wandb":
            sinks.append(WandbSink(settings))
        elif name == "mlflow":
            sinks.append(MlflowSink(settings))
        else:
            uri = settings.sqlite_path if name == "sqlite" else settings.postgres_dsn
            if not uri:
                raise ParamsError(
                    f"telemetry sink {name} needs telemetry.postgres_dsn",
                    hint=f"e.g. postgresql://user@127.0.0.1:5432/mltrail, or ${STORE_ENV}",
                )
            store = open_store(uri)
            if store.name != name:
                raise ParamsError(f"telemetry sink {name} was given a {store.name} store")
            sinks.append(store)
    return sinks
