"""Stages ``train_text_{baseline,mlflow,wandb}``: TF-IDF + logistic regression.

:func:`train_text` is the core (frames in, the fitted model, its scores and its reference out;
no files), :func:`write_trained_text` writes a model folder's files, :func:`run` reads the
prepared data and runs both under the tracked run (:func:`mltrail.stages.train.run_training`).

Outputs: ``model.npz``, ``metrics.json`` (accuracy, F1 macro and weighted, train and predict
time: the paper's Tables 2-3), ``per_class.json``, ``confusion_matrix.png``,
``predictions.csv`` (for ``dvc plots``), ``explain.json`` (the top-weighted terms per class),
``fairness.json`` (per-group metrics, when the prepared data has a ``group`` column: their
flat form and ``group_accuracy_gap`` are in ``metrics.json`` and the tracker runs too),
``reference.npz`` (what monitoring compares traffic with) and ``manifest.json``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from mltrail.config import Params, TrainTextParams
from mltrail.contracts.layout import REFERENCE_FILE
from mltrail.contracts.manifest import Manifest, ModelInfo, ReferenceEntry
from mltrail.contracts.tasks import task_spec
from mltrail.fsio import sha256_file, write_json
from mltrail.models.explain import top_terms
from mltrail.models.metrics import (
    classification_scores,
    flat_group_metrics,
    group_scores,
    per_class_report,
    plot_confusion,
    write_predictions_csv,
)
from mltrail.models.reference import Reference, build_text_reference
from mltrail.models.text import build_text_pipeline, fit_timed, save_text_model
from mltrail.stages.train import Fitted, require_prepared, run_training
from mltrail.tracking.run import Reservation, TrackedRun

TASK = task_spec("text")


@dataclass(frozen=True)
class TrainedText:
    """A trained text model and everything its folder is made of, in memory."""

    model: Pipeline
    classes: list[str]
    metrics: dict[str, float]
    """Accuracy, F1 macro and weighted on the test split; train and predict seconds."""
    y_test: NDArray[np.int64]
    predicted: NDArray[np.int64]
    reference: Reference
    reference_source: Literal["feedback", "test"]
    top_terms: dict[str, list[dict[str, Any]]]
    train_s: float
    predict_s: float
    fairness: dict[str, Any] | None = None
    """Per-group scores on the test split (``mltrail.models.metrics.group_scores``), when
    the data declares groups."""


FAIRNESS_FILE = "fairness.json"


def train_text(
    train: pd.DataFrame,
    test: pd.DataFrame,
    classes: list[str],
    params: TrainTextParams,
    reference: pd.DataFrame | None = None,
) -> TrainedText:
    """Fit on ``train``, score on ``test`` (columns ``text``, ``label``: the class index), and
    build the monitoring reference from ``reference`` (held-out feedback, when prepare chose
    it) or else the test split; no file access."""
    model = build_text_pipeline(params)
    timed = fit_timed(model, train, test)
    y, predicted = test["label"].to_numpy(), timed.predicted
    held = test if reference is None else reference
    fairness = None
    if TASK.prepared.group in test.columns:
        fairness = group_scores(y, predicted, test[TASK.prepared.group].tolist(), classes)
    return TrainedText(
        model=model,
        classes=classes,
        metrics=classification_scores(y, predicted)
        | (flat_group_metrics(fairness) if fairness is not None else {})
        | {"train_time_s": timed.train_s, "predict_time_s": timed.predict_s},
        y_test=y,
        predicted=predicted,
        reference=build_text_reference(
            model,
            train["text"].tolist(),
            held["text"].tolist(),
            held["label"].to_numpy(),
            classes,
            seed=params.seed,
        ),
        reference_source="test" if reference is None else "feedback",
        top_terms=top_terms(model, classes),
        train_s=timed.train_s,
        predict_s=timed.predict_s,
        fairness=fairness,
    )


def write_trained_text(trained: TrainedText, out: Path) -> Fitted:
    """Write the model folder's files into ``out`` (the harness adds the manifest and
    ``metrics.json``); what was written, for the manifest and the trackers."""
    y, predicted, classes = trained.y_test, trained.predicted, trained.classes
    save_text_model(trained.model, out / TASK.model_file)
    trained.reference.save(out / REFERENCE_FILE)
    write_json(out / "explain.json", {"top_terms": trained.top_terms})
    write_json(out / "per_class.json", per_class_report(y, predicted, classes))
    write_predictions_csv(out / "predictions.csv", y, predicted, classes)
    plot_confusion(out / "confusion_matrix.png", y, predicted, classes, "text: confusion")
    artifacts = ["per_class.json", "confusion_matrix.png", "explain.json", REFERENCE_FILE]
    if trained.fairness is not None:
        write_json(out / FAIRNESS_FILE, trained.fairness)
        artifacts.append(FAIRNESS_FILE)
    return Fitted(
        metrics=trained.metrics,
        artifacts=artifacts,
        model_info=ModelInfo(
            classes=classes,
            reference=ReferenceEntry(
                file=REFERENCE_FILE,
                sha256=sha256_file(out / REFERENCE_FILE),
                source=trained.reference_source,
            ),
        ),
        requirements=_requirements("scikit-learn", "numpy", "scipy"),
        timings={"train_s": trained.train_s, "predict_s": trained.predict_s},
    )


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
        recent = data_dir / layout.reference  # held-out feedback, when prepare chose it
        trained = train_text(
            pd.read_parquet(data_dir / layout.train),
            pd.read_parquet(data_dir / layout.test),
            layout.read_classes(data_dir),
            params.train_text,
            pd.read_parquet(recent) if recent.is_file() else None,
        )
        return write_trained_text(trained, out)

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
