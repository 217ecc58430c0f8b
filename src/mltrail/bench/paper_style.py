"""The paper's way of tracking, for comparison: the tracker's client inline in the training.

MLflow: the fluent API (``mlflow.start_run``, ``log_params``, ``log_metrics``) and
``log_model`` with its defaults (requirement inference; for PyTorch, MLflow 3's default
``pt2`` format, which needs an input example: one test image, as its error message asks).
W&B: ``wandb.init`` / ``wandb.log`` / ``wandb.finish`` inline (offline, as mltrail's).
Same data, model, seed and metrics as ``mltrail train``; writes ``metrics.json`` like it, and
``run.json``: where the tool keeps the run (the benchmark reads the tool's runtime there).

    python -m mltrail.bench.paper_style {text|cifar10} {mlflow|wandb} PARAMS DATA OUT RUN_NAME \
        [KEY=VALUE ...]     # params overrides, as mltrail's --set
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mltrail.config import Params, load_params
from mltrail.contracts.layout import METRICS_FILE
from mltrail.contracts.tasks import task_spec
from mltrail.fsio import write_json

Log = Callable[[Mapping[str, float], int | None], None]
LogModel = Callable[[Any, Any], None]


def train_text(params: Params, data_dir: Path, log: Log) -> tuple[Any, dict[str, float], Any]:
    import pandas as pd

    from mltrail.models.metrics import classification_scores
    from mltrail.models.text import build_text_pipeline, fit_timed

    layout = task_spec("text").prepared
    train = pd.read_parquet(data_dir / layout.train)
    test = pd.read_parquet(data_dir / layout.test)
    model = build_text_pipeline(params.train_text)
    timed = fit_timed(model, train, test)  # as mltrail train text
    metrics = classification_scores(test["label"].to_numpy(), timed.predicted) | {
        "train_time_s": timed.train_s,
        "predict_time_s": timed.predict_s,
    }
    return model, metrics, None


def train_cifar10(params: Params, data_dir: Path, log: Log) -> tuple[Any, dict[str, float], Any]:
    import numpy as np

    from mltrail.models.cnn import resolve_recipe
    from mltrail.models.cnn_train import train_cnn

    section = params.train_cifar10
    layout = task_spec("cifar10").prepared
    with np.load(data_dir / layout.train) as train, np.load(data_dir / layout.test) as test:
        x_train, y_train, x_test, y_test = train["x"], train["y"], test["x"], test["y"]
    result = train_cnn(
        x_train,
        y_train,
        x_test,
        y_test,
        resolve_recipe(section),
        section.epochs,
        section.seed,
        device=section.device,
        on_epoch=lambda r: log(r.metrics(), r.epoch),
        progress=False,
    )
    metrics = {
        "accuracy": result.accuracy,
        "test_loss": result.test_loss,
        "train_time_s": result.train_time_s,
        "predict_time_s": result.predict_time_s,
    }
    return result.model.cpu(), metrics, x_test[:1]


TASKS = {"text": train_text, "cifar10": train_cifar10}


@contextmanager
def _mlflow(
    params: Params, task: str, run_name: str, where: dict[str, str]
) -> Iterator[tuple[Log, LogModel]]:
    import mlflow

    mlflow.set_tracking_uri(params.tracking.mlflow_uri)
    mlflow.set_experiment(params.tracking.experiment)
    with mlflow.start_run(run_name=run_name) as run:
        where |= {"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}
        mlflow.log_params(getattr(params, f"train_{task}").model_dump())

        def log(metrics: Mapping[str, float], step: int | None) -> None:
            mlflow.log_metrics(dict(metrics), step=step)

        def log_model(model: Any, example: Any) -> None:
            if task == "text":
                import mlflow.sklearn

                mlflow.sklearn.log_model(model, name="model")
            else:
                import mlflow.pytorch

                mlflow.pytorch.log_model(model, name="model", input_example=example)

        yield log, log_model


@contextmanager
def _wandb(
    params: Params, task: str, run_name: str, where: dict[str, str]
) -> Iterator[tuple[Log, LogModel]]:
    from mltrail.paths import keep_wandb_files_in

    keep_wandb_files_in(Path(params.tracking.wandb_dir).resolve())  # W&B's caches too, as mltrail's
    import wandb

    run = wandb.init(
        project=params.tracking.wandb_project,
        mode=params.tracking.wandb_mode,
        dir=params.tracking.wandb_dir,
        name=run_name,
        config=getattr(params, f"train_{task}").model_dump(),
    )

    where |= {"run_id": run.id, "run_dir": str(Path(run.dir).parent)}

    def log(metrics: Mapping[str, float], step: int | None) -> None:
        run.log(dict(metrics), step=step)

    yield log, lambda model, example: None  # the paper logged no W&B model artifact
    run.finish()


def main(argv: list[str]) -> int:
    task, tool, params_file, data, out, run_name, *overrides = argv
    params = load_params(Path(params_file), overrides)
    tracker = _mlflow if tool == "mlflow" else _wandb
    where: dict[str, str] = {}
    with tracker(params, task, run_name, where) as (log, log_model):
        model, metrics, example = TASKS[task](params, Path(data), log)
        log(metrics, None)
        log_model(model, example)
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / METRICS_FILE, metrics)
    write_json(Path(out) / "run.json", where)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
