"""Explanations logged with every training run.

Text: the terms with the largest coefficients per class, the model's global explanation (the
model is linear, so a term's coefficient times its TF-IDF weight is its exact share of a
decision; ``TextScorer.explain`` gives that per prediction). CNN: vanilla gradient saliency
(|d logit / d pixel|, the largest over the channels) on a fixed sample, one image per class:
cheap, exact for this model, and enough to see whether it looks at the object or at the
background. SHAP would need a background set and minutes of CPU per image for little more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def top_terms(model: Any, classes: list[str], n: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Per class, the ``n`` terms whose presence pushes a text towards it most."""
    vectorizer, classifier = model.named_steps["tfidf"], model.named_steps["clf"]
    terms = np.empty(len(vectorizer.vocabulary_), dtype=object)
    for term, index in vectorizer.vocabulary_.items():
        terms[index] = term
    coef = np.asarray(classifier.coef_, dtype=np.float64)
    # Two classes: one row of coefficients, for class 1; class 0 is pushed by its negative.
    per_class = [-coef[0], coef[0]] if coef.shape[0] == 1 else list(coef)
    found = {}
    for name, weights in zip(classes, per_class, strict=True):
        order = np.argsort(-weights)[:n]
        found[name] = [{"term": str(terms[i]), "weight": float(weights[i])} for i in order]
    return found


def fixed_sample(labels: NDArray[np.integer[Any]], classes: int) -> list[int]:
    """The first held-out image of each class: the same images for every run."""
    picked = []
    for c in range(classes):
        where = np.flatnonzero(labels == c)
        if len(where):
            picked.append(int(where[0]))
    return picked


def saliency(model: Any, images: NDArray[np.float32]) -> tuple[NDArray[np.float32], list[int]]:
    """(N x H x W saliency maps scaled to [0, 1] per image, the predicted classes)."""
    import torch

    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).requires_grad_(True)
    logits = model(x)
    predicted = logits.argmax(dim=1)
    logits.gather(1, predicted[:, None]).sum().backward()
    assert x.grad is not None
    maps = x.grad.abs().amax(dim=1).numpy()
    maps /= np.maximum(maps.reshape(len(maps), -1).max(axis=1), 1e-12)[:, None, None]
    return maps.astype(np.float32), predicted.tolist()


def plot_saliency(
    path: Path,
    images: NDArray[np.float32],
    maps: NDArray[np.float32],
    classes: list[str],
    labels: list[int],
    predicted: list[int],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(np.clip(images[i].transpose(1, 2, 0), 0, 1))
        axes[0, i].set_title(
            f"{classes[labels[i]]}\n-> {classes[predicted[i]]}",
            fontsize=7,
            color="black" if labels[i] == predicted[i] else "red",
        )
        axes[1, i].imshow(maps[i], cmap="inferno", vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle("CNN saliency |d logit / d pixel| (true -> predicted)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
