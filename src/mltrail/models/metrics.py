"""Evaluation shared by both tasks: scores, a per-class report, confusion matrix, curves."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def classification_scores(y_true: NDArray[Any], y_pred: NDArray[Any]) -> dict[str, float]:
    """The paper's Table 2 metrics."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted")),
    }


GROUP_GAP = "group_accuracy_gap"
"""Accuracy of the best group minus that of the worst, on the test split."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. ]")
"""Characters of a group's name that cannot be in a metric key (``/`` can, but nests in W&B)."""


def group_metric_key(group: str, metric: str) -> str:
    """``group.<name>.<metric>``: a flat key every tracker accepts. MLflow allows letters,
    digits and ``_-. /`` in a key; a name with other characters has them replaced by ``_`` and
    a short hash of the name added, so that two such names ("é", "è") never share a key."""
    safe = _UNSAFE.sub("_", group)[:80]
    if safe != group:
        safe += "-" + hashlib.sha256(group.encode()).hexdigest()[:8]
    return f"group.{safe}.{metric}"


def group_scores(
    y_true: NDArray[Any], y_pred: NDArray[Any], groups: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Per-group accuracy, F1 (macro), support and selection rate by Fairlearn's MetricFrame,
    and the gap in accuracy between the best and the worst group.

    The selection rate is the share of a group predicted as the positive class: defined for
    two classes only (class index 1, e.g. ``pos``); ``None`` otherwise.
    """
    from fairlearn.metrics import MetricFrame, count, selection_rate  # the train extra

    labels = list(range(len(classes)))
    metrics: dict[str, Any] = {
        "accuracy": accuracy_score,
        "f1_macro": lambda t, p: f1_score(t, p, labels=labels, average="macro", zero_division=0),
        "support": count,
    }
    binary = len(classes) == 2
    if binary:
        metrics["selection_rate"] = lambda t, p: selection_rate(t, p, pos_label=1)
    frame = MetricFrame(
        metrics=metrics,
        y_true=np.asarray(y_true),
        y_pred=np.asarray(y_pred),
        sensitive_features=np.asarray([str(g) for g in groups]),
    )
    by_group = frame.by_group
    per_group = {
        str(name): {
            "accuracy": float(row["accuracy"]),
            "f1_macro": float(row["f1_macro"]),
            "support": int(row["support"]),
            "selection_rate": float(row["selection_rate"]) if binary else None,
        }
        for name, row in by_group.iterrows()
    }
    accuracy = by_group["accuracy"]
    return {
        "groups": per_group,
        "overall": {k: float(v) for k, v in frame.overall.items()},
        "accuracy_gap": float(frame.difference(method="between_groups")["accuracy"]),
        "best": str(accuracy.idxmax()),
        "worst": str(accuracy.idxmin()),
        "selection_rate_of": classes[1] if binary else None,
    }


def flat_group_metrics(scores: Mapping[str, Any]) -> dict[str, float]:
    """The gap and every group's metrics as flat float metrics (metrics.json, the trackers)."""
    flat = {GROUP_GAP: float(scores["accuracy_gap"])}
    for group, values in scores["groups"].items():
        for metric, value in values.items():
            if value is not None:
                flat[group_metric_key(group, metric)] = float(value)
    return flat


def per_class_report(
    y_true: NDArray[Any], y_pred: NDArray[Any], classes: Sequence[str]
) -> dict[str, Any]:
    report: dict[str, Any] = classification_report(
        y_true,
        y_pred,
        labels=list(range(len(classes))),
        target_names=list(classes),
        output_dict=True,
        zero_division=0,
    )
    return report


def write_predictions_csv(
    path: Path, y_true: NDArray[Any], y_pred: NDArray[Any], classes: Sequence[str]
) -> None:
    """actual,predicted rows by class name: what ``dvc plots show`` draws a confusion from."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["actual", "predicted"])
        writer.writerows((classes[t], classes[p]) for t, p in zip(y_true, y_pred, strict=True))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    path: Path, y_true: NDArray[Any], y_pred: NDArray[Any], classes: Sequence[str], title: str
) -> None:
    plt = _pyplot()
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 4 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    if len(classes) <= 12:
        threshold = matrix.max() / 2
        for (i, j), value in np.ndenumerate(matrix):
            color = "white" if value > threshold else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(path: Path, history: Sequence[Mapping[str, float]], title: str) -> None:
    plt = _pyplot()
    epochs = [int(h["epoch"]) for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    left.plot(epochs, [h["test_loss"] for h in history], marker="o", label="test")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    right.plot(epochs, [h["test_accuracy"] for h in history], marker="o", label="test")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
