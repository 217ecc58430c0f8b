"""Data profiles: what a prepared dataset looks like, kept as the reference for drift checks.

Profiles hold no timestamps and round floats, so preparing the same data twice gives the same
bytes (DVC then sees nothing changed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def summary(values: NDArray[Any]) -> dict[str, float]:
    """Count, mean, std, min, quantiles and max of a 1-d array."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"count": 0}
    stats = {"count": float(v.size), "mean": v.mean(), "std": v.std(), "min": v.min()}
    stats |= {f"p{int(q * 100):02d}": float(np.quantile(v, q)) for q in QUANTILES}
    stats["max"] = v.max()
    return {k: _round(float(x)) for k, x in stats.items()}


def class_counts(labels: NDArray[np.integer[Any]], classes: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(classes))
    return {name: int(c) for name, c in zip(classes, counts, strict=True)}


def text_content_hash(texts: Iterable[str], labels: Iterable[int]) -> str:
    """sha256 over (label, text) rows in order: the data's identity, independent of file format."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(f"{int(label)}\t{text}\n".encode())
    return digest.hexdigest()


def array_content_hash(*arrays: NDArray[Any]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def text_profile(
    texts: Sequence[str], labels: NDArray[np.integer[Any]], classes: Sequence[str]
) -> dict[str, Any]:
    chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    counts = class_counts(labels, classes)
    return {
        "rows": len(texts),
        "class_counts": counts,
        "class_fractions": {k: _round(v / max(len(texts), 1)) for k, v in counts.items()},
        "chars": summary(chars),
        "words": summary(words),
    }


def image_profile(
    images: NDArray[np.floating[Any]], labels: NDArray[np.integer[Any]], classes: Sequence[str]
) -> dict[str, Any]:
    """Per-channel mean/std, per-image brightness and contrast, class counts.

    ``images`` is N x C x H x W in [0, 1].
    """
    per_image = images.reshape(len(images), images.shape[1], -1)
    brightness = per_image.mean(axis=(1, 2), dtype=np.float64)
    contrast = per_image.std(axis=(1, 2), dtype=np.float64)
    channel_mean = images.mean(axis=(0, 2, 3), dtype=np.float64)
    channel_std = images.std(axis=(0, 2, 3), dtype=np.float64)
    return {
        "images": len(images),
        "shape": list(images.shape[1:]),
        "class_counts": class_counts(labels, classes),
        "channel_mean": [_round(float(v)) for v in channel_mean],
        "channel_std": [_round(float(v)) for v in channel_std],
        "brightness": summary(brightness),
        "contrast": summary(contrast),
    }
