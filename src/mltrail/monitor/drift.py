"""Drift tests: a window of served predictions against the model's reference.

Every numeric feature of the input profiles (data drift) and the confidence (prediction drift)
get a two-sample Kolmogorov-Smirnov test; the predicted class mix gets a chi-square
test of homogeneity against the reference's. The tests are scipy's. Their p-values are
compared with ``alpha`` divided by the number of tests (Bonferroni), so ``alpha`` bounds the
chance that an in-distribution window raises any drift at all: the false-alarm rate per check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped]

from mltrail.models.reference import Reference

DATA, PREDICTION = "data", "prediction"


@dataclass(frozen=True)
class DriftTest:
    name: str  # a profile feature, "confidence" or "class_mix"
    group: str  # data | prediction
    method: str  # ks | chi2
    statistic: float
    p_value: float
    threshold: float
    """The p-value under which it counts as drift (alpha over the number of tests)."""
    reference_mean: float | None
    window_mean: float | None

    @property
    def drifted(self) -> bool:
        return self.p_value < self.threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"drifted": self.drifted}


DECIMALS = 5


def ks(reference: NDArray[np.float64], window: NDArray[np.float64]) -> tuple[float, float]:
    """The two-sample KS statistic (largest gap between the two CDFs) and its p-value.

    Values are compared at ``DECIMALS`` decimals: features are float32 sums whose last bits
    depend on the batch they were computed in (training measures the reference 500 images at
    a time, the server a request at a time), and a point mass (a CNN whose dead ReLUs give
    many images the same features) split in two by one ulp looks like a shift to KS."""
    result = stats.ks_2samp(np.round(reference, DECIMALS), np.round(window, DECIMALS))
    return float(result.statistic), float(result.pvalue)


def class_mix(
    reference_counts: NDArray[np.int64], window_counts: NDArray[np.int64]
) -> tuple[float, float]:
    """Chi-square test of homogeneity: do the reference and the window predict the classes in
    the same proportions? Both are samples (a reference of a few hundred held-out feedback
    rows is as uncertain as the window), so this is the 2 x K contingency test, not a
    goodness of fit against fixed fractions; classes neither predicted are left out."""
    table = np.vstack([reference_counts, window_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0  # one class in both: nothing can differ
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def run_tests(
    reference: Reference,
    features: dict[str, NDArray[np.float64]],
    predicted: NDArray[np.int64],
    confidence: NDArray[np.float64],
    alpha: float,
) -> list[DriftTest]:
    """Every test for one window; features the reference lacks (or the window) are skipped."""
    shared = [name for name in reference.features if name in features and len(features[name])]
    threshold = alpha / (len(shared) + 2)  # + confidence + class mix
    found = []
    for name in shared:
        ref, win = reference.features[name], features[name]
        statistic, p = ks(ref, win)
        found.append(
            DriftTest(
                name, DATA, "ks", statistic, p, threshold, float(ref.mean()), float(win.mean())
            )
        )
    statistic, p = ks(reference.confidence, confidence)
    found.append(
        DriftTest(
            "confidence",
            PREDICTION,
            "ks",
            statistic,
            p,
            threshold,
            float(reference.confidence.mean()),
            float(confidence.mean()),
        )
    )
    k = len(reference.classes)
    counts = np.bincount(predicted, minlength=k)[:k]
    statistic, p = class_mix(np.bincount(reference.predicted, minlength=k)[:k], counts)
    found.append(DriftTest("class_mix", PREDICTION, "chi2", statistic, p, threshold, None, None))
    return found
