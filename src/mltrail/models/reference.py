"""The reference a model is monitored against: written by training beside the model
(``reference.npz``, loaded with ``allow_pickle=False``).

It holds what the model saw, measured the way serving measures traffic
(:mod:`mltrail.models.features`): the profile of every held-out input, the model's
predictions and confidences on them, the true labels (so the reference accuracy), and the
projection the served profiles use (text: TruncatedSVD directions of the training TF-IDF
matrix; images: principal directions of the CNN's penultimate features on training images).
The held-out split, not the training split, because a model is overconfident on what it was
fitted to: in-distribution traffic looks like held-out data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mltrail.errors import MltrailError
from mltrail.models.features import (
    IMAGE_FEATURES,
    TEXT_FEATURES,
    ImageProjection,
    Predict,
    image_predictor,
    projection_names,
    text_predictor,
)

FORMAT = "mltrail.reference/1"
PROJECTION_DIMS = 4
MAX_ROWS = 10_000  # held-out rows kept: plenty for two-sample tests against a 200-row window


@dataclass
class Reference:
    kind: str  # text | image
    classes: list[str]
    features: dict[str, NDArray[np.float64]]
    predicted: NDArray[np.int64]
    confidence: NDArray[np.float64]
    labels: NDArray[np.int64]
    projection: NDArray[np.float32]
    """text: vocabulary x k; image: k x d (principal directions)."""
    projection_mean: NDArray[np.float32]
    """image: the d feature means subtracted before projecting; text: empty."""

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predicted == self.labels)) if len(self.labels) else 0.0

    @property
    def class_fractions(self) -> NDArray[np.float64]:
        counts = np.bincount(self.predicted, minlength=len(self.classes)).astype(np.float64)
        fractions: NDArray[np.float64] = counts / max(counts.sum(), 1.0)
        return fractions

    def save(self, path: Path) -> None:
        names = list(self.features)
        config = {"format": FORMAT, "kind": self.kind, "classes": self.classes, "features": names}
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                config=np.frombuffer(json.dumps(config).encode(), dtype=np.uint8),
                features=np.column_stack([self.features[n] for n in names]).astype(np.float32),
                predicted=self.predicted.astype(np.int16),
                confidence=self.confidence.astype(np.float32),
                labels=self.labels.astype(np.int16),
                projection=self.projection.astype(np.float32),
                projection_mean=self.projection_mean.astype(np.float32),
            )


def load_reference(path: Path) -> Reference:
    try:
        with np.load(path, allow_pickle=False) as z:
            config = json.loads(z["config"].tobytes())
            table = z["features"].astype(np.float64)
            reference = Reference(
                kind=config["kind"],
                classes=list(config["classes"]),
                features={n: table[:, i] for i, n in enumerate(config["features"])},
                predicted=z["predicted"].astype(np.int64),
                confidence=z["confidence"].astype(np.float64),
                labels=z["labels"].astype(np.int64),
                projection=z["projection"],
                projection_mean=z["projection_mean"],
            )
    except FileNotFoundError:
        raise MltrailError(
            f"{path} is missing: the model has no monitoring reference",
            hint="retrain it with this version of mltrail (dvc repro), which writes one",
        ) from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise MltrailError(f"{path} is not an mltrail reference ({exc})") from None
    if config.get("format") != FORMAT:
        raise MltrailError(f"{path} has format {config.get('format')!r}, expected {FORMAT!r}")
    return reference


def _sample(n: int, limit: int, seed: int) -> NDArray[np.intp]:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _table(
    predict: Predict, inputs: Any, batch: int
) -> tuple[NDArray[np.float64], list[dict[str, float]]]:
    probs, profiles = [], []
    for start in range(0, len(inputs), batch):
        p, rows = predict(inputs[start : start + batch])
        probs.append(p)
        profiles.extend(rows)
    return np.concatenate(probs), profiles


def _reference(
    kind: str,
    classes: list[str],
    predict: Predict,
    inputs: Any,
    labels: NDArray[np.integer[Any]],
    names: tuple[str, ...],
    projection: NDArray[np.float32],
    projection_mean: NDArray[np.float32],
    batch: int,
) -> Reference:
    probs, profiles = _table(predict, inputs, batch)
    return Reference(
        kind=kind,
        classes=classes,
        features={n: np.array([p[n] for p in profiles], dtype=np.float64) for n in names},
        predicted=probs.argmax(axis=1).astype(np.int64),
        confidence=probs.max(axis=1),
        labels=np.asarray(labels, dtype=np.int64),
        projection=projection,
        projection_mean=projection_mean,
    )


def build_text_reference(
    model: Any,
    train_texts: list[str],
    test_texts: list[str],
    test_labels: NDArray[np.integer[Any]],
    classes: list[str],
    seed: int = 0,
) -> Reference:
    """``model``: the fitted TF-IDF + LR pipeline."""
    from sklearn.decomposition import TruncatedSVD

    from mltrail.models.text import TextScorer

    fit_rows = _sample(len(train_texts), MAX_ROWS, seed)
    tfidf = model.named_steps["tfidf"].transform([train_texts[i] for i in fit_rows])
    k = max(1, min(PROJECTION_DIMS, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
    svd = TruncatedSVD(n_components=k, random_state=seed).fit(tfidf)
    projection = np.ascontiguousarray(svd.components_.T, dtype=np.float32)  # vocabulary x k
    rows = _sample(len(test_texts), MAX_ROWS, seed)
    predict = text_predictor(TextScorer(model, projection))
    return _reference(
        "text",
        classes,
        predict,
        [test_texts[i] for i in rows],
        np.asarray(test_labels)[rows],
        TEXT_FEATURES + projection_names(k),
        projection,
        np.zeros(0, np.float32),
        batch=1000,
    )


def build_image_reference(
    model: Any,
    x_train: NDArray[np.float32],
    x_test: NDArray[np.float32],
    y_test: NDArray[np.integer[Any]],
    classes: list[str],
    seed: int = 0,
) -> Reference:
    """``model``: the trained CNN (``torch.nn.Sequential``), in eval mode."""
    import torch

    model.eval()
    fit_rows = _sample(len(x_train), 5000, seed)
    with torch.inference_mode():
        body = model[:-1]
        features = (
            torch.cat(
                [
                    body(torch.from_numpy(np.ascontiguousarray(x_train[fit_rows[i : i + 500]])))
                    for i in range(0, len(fit_rows), 500)
                ]
            )
            .numpy()
            .astype(np.float64)
        )
    mean = features.mean(axis=0)
    # Principal directions: the top right-singular vectors of the centred features.
    _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
    components = vt[: min(PROJECTION_DIMS, len(vt))].astype(np.float32)
    mean32 = mean.astype(np.float32)
    predict = image_predictor(model, ImageProjection(mean32, components))
    rows = _sample(len(x_test), MAX_ROWS, seed)
    return _reference(
        "image",
        classes,
        predict,
        x_test[rows],
        np.asarray(y_test)[rows],
        IMAGE_FEATURES + projection_names(len(components)),
        components,
        mean32,
        batch=500,
    )
