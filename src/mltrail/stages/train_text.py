"""Stages ``train_text_{baseline,mlflow,wandb}``: TF-IDF + logistic regression.

Outputs: ``model.npz``, ``metrics.json`` (accuracy, F1 macro and weighted, train and predict
time: the paper's Tables 2-3), ``per_class.json``, ``confusion_matrix.png``,
``predictions.csv`` (for ``dvc plots``), ``explain.json`` (the top-weighted terms per class),
``reference.npz`` (what monitoring compares traffic with) and ``manifest.json``.
"""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from mltrail.config import Params
from mltrail.contracts.layout import REFERENCE_FILE
from mltrail.contracts.manifest import Manifest, ModelInfo, ReferenceEntry
from mltrail.contracts.tasks import task_spec
from mltrail.fsio import sha256_file, write_json
from mltrail.models.explain import top_terms
from mltrail.models.metrics import (
    classification_scores,
    per_class_report,
    plot_confusion,
    write_predictions_csv,
)
from mltrail.models.reference import build_text_reference
from mltrail.models.text import build_text_pipeline, save_text_model
from mltrail.stages.train import Fitted, require_prepared, run_training
from mltrail.tracking.run import Reservation, TrackedRun

TASK = task_spec("text")


def run(
    params: Params,
    tracker: str | Reservation,
    data_dir: Path,
    out_dir: Path,
    stage: str | None = None,
) -> Manifest:
    """Train on the prepared data in ``data_dir``, write ``out_dir``; ``stage``: the DVC stage
    (see :func:`mltrail.stages.train.run_training`)."""
    layout = TASK.prepared
    require_prepared(data_dir, TASK)

    def fit(run: TrackedRun, out: Path) -> Fitted:
        train = pd.read_parquet(data_dir / layout.train)
        test = pd.read_parquet(data_dir / layout.test)
        classes = layout.read_classes(data_dir)
        model = build_text_pipeline(params.train_text)
        # One BLAS thread: the solver's BLAS calls are too small to gain from more, and
        # OpenBLAS's spinning workers made fit 40% slower on 2 cores (0.9 s vs 1.3 s for
        # 5,000 IMDB rows), and much slower still beside any other busy process.
        with threadpool_limits(limits=1, user_api="blas"):
            start = time.perf_counter()
            model.fit(train["text"], train["label"])
            train_time = time.perf_counter() - start
            start = time.perf_counter()
            predicted = model.predict(test["text"])
            predict_time = time.perf_counter() - start
        y = test["label"].to_numpy()
        metrics = classification_scores(y, predicted) | {
            "train_time_s": train_time,
            "predict_time_s": predict_time,
        }
        save_text_model(model, out / TASK.model_file)
        # Monitored against held-out feedback when prepare chose it, else the test split.
        recent = data_dir / layout.reference
        held = pd.read_parquet(recent) if recent.is_file() else test
        reference = build_text_reference(
            model, train["text"].tolist(), held["text"].tolist(), held["label"].to_numpy(),
            classes, seed=params.train_text.seed,
        )  # fmt: skip
        reference.save(out / REFERENCE_FILE)
        write_json(out / "explain.json", {"top_terms": top_terms(model, classes)})
        write_json(out / "per_class.json", per_class_report(y, predicted, classes))
        write_predictions_csv(out / "predictions.csv", y, predicted, classes)
        plot_confusion(out / "confusion_matrix.png", y, predicted, classes, "text: confusion")
        return Fitted(
            metrics=metrics,
            artifacts=["per_class.json", "confusion_matrix.png", "explain.json", REFERENCE_FILE],
            model_info=ModelInfo(
                classes=classes,
                reference=ReferenceEntry(
                    file=REFERENCE_FILE,
                    sha256=sha256_file(out / REFERENCE_FILE),
                    source="feedback" if recent.is_file() else "test",
                ),
            ),
            requirements=_requirements("scikit-learn", "numpy", "scipy"),
            timings={"train_s": train_time, "predict_s": predict_time},
        )

    return run_training(
        task=TASK,
        tracker=tracker,
        params=params,
        section=params.train_text,
        data_dir=data_dir,
        out_dir=out_dir,
        fit=fit,
        stage=stage,
    )


def _requirements(*names: str) -> list[str]:
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]
