"""What is measured about every input: the same code for the served request and for the
reference built from held-out data at training time, so the two can be compared.

Text: length in characters and tokens, the out-of-vocabulary rate, and the normalised TF-IDF
vector projected on a few directions of the training data (``proj_0`` ...). Images: channel
means and standard deviations, brightness, contrast, and the CNN's penultimate features
projected on their principal directions. The projections are what catches a shift the simple
statistics miss (20 Newsgroups texts of IMDB-like length; rotated images, whose pixel
statistics do not change).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Profile = dict[str, float]
Predict = Callable[[Any], tuple[NDArray[np.float64], list[Profile]]]
"""Inputs -> (class probabilities, one row per input; one profile per input)."""

TEXT_FEATURES = ("chars", "tokens", "oov_rate")
IMAGE_FEATURES = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "brightness",
    "contrast",
)


def projection_names(k: int) -> tuple[str, ...]:
    return tuple(f"proj_{i}" for i in range(k))


def text_predictor(scorer: Any) -> Predict:
    """``scorer``: a :class:`mltrail.models.text.TextScorer` (with or without a projection)."""

    def predict(texts: Sequence[str]) -> tuple[NDArray[np.float64], list[Profile]]:
        probs, details = scorer.score(list(texts))
        profiles = []
        for text, (n, known, projected) in zip(texts, details, strict=True):
            profile = {
                "chars": float(len(text)),
                "tokens": float(n),
                "oov_rate": (n - known) / n if n else 1.0,
            }
            profile.update(zip(projection_names(len(projected)), projected, strict=True))
            profiles.append(profile)
        return probs, profiles

    return predict


def image_statistics(images: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """N x 8 (``IMAGE_FEATURES``) for N x 3 x H x W images in [0, 1]."""
    x = np.asarray(images, dtype=np.float64)
    flat = x.reshape(len(x), 3, -1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).reshape(len(x), -1)
    return np.column_stack(
        [flat.mean(axis=2), flat.std(axis=2), gray.mean(axis=1), gray.std(axis=1)]
    )


class ImageProjection:
    """The CNN's penultimate features (everything but the last layer), centred and projected
    on ``components`` (k x d): the same numbers the reference holds."""

    def __init__(self, mean: NDArray[np.floating[Any]], components: NDArray[np.floating[Any]]):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.components_t = np.ascontiguousarray(np.asarray(components, dtype=np.float32).T)

    def __call__(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray((features - self.mean) @ self.components_t)


def image_profiles(
    images: NDArray[np.floating[Any]],
    features: NDArray[np.float32],
    projection: ImageProjection | None,
) -> list[Profile]:
    """One profile per image: its statistics, and its penultimate ``features`` projected."""
    stats = image_statistics(images)
    names: tuple[str, ...] = IMAGE_FEATURES
    rows = stats
    if projection is not None:
        projected = projection(features)
        names = IMAGE_FEATURES + projection_names(projected.shape[1])
        rows = np.column_stack([stats, projected])
    return [dict(zip(names, row.tolist(), strict=True)) for row in rows]


def image_predictor(model: Any, projection: ImageProjection | None) -> Predict:
    """``model``: a ``torch.nn.Sequential`` CNN whose last layer maps features to logits."""
    import threading

    import torch

    body, head = model[:-1], model[-1]
    lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def predict(images: NDArray[np.float32]) -> tuple[NDArray[np.float64], list[Profile]]:
        with lock, torch.inference_mode():
            features = body(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
            probs = torch.softmax(head(features), dim=1).double().numpy()
        return probs, image_profiles(images, features.numpy(), projection)

    return predict


def onnx_image_predictor(session: Any, projection: ImageProjection | None) -> Predict:
    """The same predictor on the CNN's ONNX copy (see :func:`mltrail.models.cnn_io.export_onnx`):
    ``session`` is an ``onnxruntime.InferenceSession`` with outputs ``features`` and ``logits``.
    Same probabilities and profiles as :func:`image_predictor`, to float32 rounding."""
    import threading

    lock = threading.Lock()  # one run at a time: ONNX Runtime already uses every core

    def predict(images: NDArray[np.float32]) -> tuple[NDArray[np.float64], list[Profile]]:
        x = np.ascontiguousarray(images, dtype=np.float32)
        with lock:
            features, logits = session.run(["features", "logits"], {"images": x})
        # Softmax in float32, as torch computes it, then widened.
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float64)
        return probs, image_profiles(images, features, projection)

    return predict
