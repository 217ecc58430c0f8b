"""The paper's way of tracking, for comparison: the tracker's client inline in the training.

MLflow: fluent API, ``mlflow.sklearn.log_model`` with its defaults (requirement inference).
W&B: ``wandb.init`` / ``wandb.log`` / ``wandb.finish`` inline (offline here, as mltrail's).
Same data, model and metrics as ``mltrail train text``.

    python benchmarks/paper_style.py {mlflow|wandb} DATA_DIR MLFLOW_URI
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from mltrail.config import TrainTextParams
from mltrail.models.metrics import classification_scores
from mltrail.models.text import build_text_pipeline


def fit(params: TrainTextParams, data_dir: Path) -> tuple[Pipeline, dict[str, float]]:
    """Train and score exactly as ``mltrail train text`` does."""
    train = pd.read_parquet(data_dir / "train.parquet")
    test = pd.read_parquet(data_dir / "test.parquet")
    model = build_text_pipeline(params)
    start = time.perf_counter()
    model.fit(train["text"], train["label"])
    train_time = time.perf_counter() - start
    scores = classification_scores(test["label"].to_numpy(), model.predict(test["text"]))
    return model, scores | {"train_time_s": train_time}


def main(tool: str, data_dir: Path, mlflow_uri: str) -> None:
    params = TrainTextParams()
    if tool == "mlflow":
        import mlflow
        import mlflow.sklearn

        mlflow.set_tracking_uri(mlflow_uri)
        with mlflow.start_run(run_name="paper_style"):
            mlflow.log_params(params.model_dump())
            model, metrics = fit(params, data_dir)
            mlflow.log_metrics(metrics)
            mlflow.sklearn.log_model(model, name="model")  # defaults: requirement inference
    else:
        import wandb

        run = wandb.init(project="paper-style", mode="offline", config=params.model_dump())
        _, metrics = fit(params, data_dir)
        wandb.log(metrics)
        run.finish()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
