"""Synthetic references and windows with known answers (no model, no store)."""

from __future__ import annotations

import numpy as np

from mltrail.models.reference import Reference
from mltrail.telemetry import Prediction, Window

CLASSES = ["neg", "pos"]


def reference(n: int = 5000, seed: int = 0) -> Reference:
    """Two features ~ N(0, 1) and U(0, 1); balanced predictions, confidence ~ U(0.5, 1);
    accuracy 0.9."""
    rng = np.random.default_rng(seed)
    predicted = rng.integers(0, 2, n)
    labels = np.where(rng.random(n) < 0.9, predicted, 1 - predicted)
    return Reference(
        kind="text",
        classes=CLASSES,
        features={"normal": rng.normal(0, 1, n), "uniform": rng.random(n)},
        predicted=predicted,
        confidence=rng.uniform(0.5, 1.0, n),
        labels=labels,
        projection=np.zeros((3, 1), np.float32),
        projection_mean=np.zeros(0, np.float32),
    )


def window(
    n: int = 200,
    seed: int = 1,
    shift: float = 0.0,
    positive: float = 0.5,
    confidence: tuple[float, float] = (0.5, 1.0),
    latency_ms: float = 1.0,
    correct: float | None = None,
    labelled: int = 0,
) -> Window:
    """``shift`` moves the normal feature's mean; ``positive``: share predicted "pos";
    ``correct``: share of the first ``labelled`` predictions whose feedback agrees."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(shift, 1, n)
    uniform = rng.random(n)
    predicted = (rng.random(n) < positive).astype(int)
    conf = rng.uniform(*confidence, n)
    predictions = [
        Prediction(
            f"p{i}",
            1000.0 + i,
            "/predict/text",
            "m@1",
            int(predicted[i]),
            CLASSES[predicted[i]],
            float(conf[i]),
            latency_ms,
            {"normal": float(normal[i]), "uniform": float(uniform[i])},
        )
        for i in range(n)
    ]
    feedback = {}
    for i in range(labelled):
        right = rng.random() < (correct if correct is not None else 0.9)
        feedback[f"p{i}"] = int(predicted[i]) if right else 1 - int(predicted[i])
    return Window(predictions, feedback)
