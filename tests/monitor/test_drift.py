"""Drift tests on synthetic data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from mltrail.monitor.drift import class_mix, ks, run_tests
from mltrail.monitor.policy import window_arrays
from tests.monitor import synthetic


def test_ks_on_known_samples() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 5000)
    # Disjoint supports: the CDFs differ by 1 somewhere.
    statistic, p = ks(a, a.max() + 1 + rng.random(200))
    assert statistic == 1.0 and p < 1e-100
    same_statistic, same_p = ks(a, rng.normal(0, 1, 200))
    assert same_statistic < 0.12 and same_p > 0.01
    # A half-sigma shift in 200 samples: KS statistic near Phi(0.25) - Phi(-0.25) = 0.197.
    statistic, p = ks(a, rng.normal(0.5, 1, 200))
    assert 0.12 < statistic < 0.3 and p < 1e-3


def test_a_point_mass_one_ulp_apart_is_not_drift() -> None:
    rng = np.random.default_rng(0)
    reference = np.concatenate([np.full(300, 0.1976703), rng.normal(0, 1, 1700)])
    window = np.concatenate([np.full(30, 0.1976703 + 3e-8), rng.normal(0, 1, 170)])
    assert ks(reference, window)[1] > 0.01


def test_class_mix_on_known_counts() -> None:
    statistic, p = class_mix(np.array([1000, 1000]), np.array([100, 100]))
    assert statistic == 0.0 and p == pytest.approx(1.0)
    # 2 x 2 table [[a, b], [c, d]]: chi2 = N (ad - bc)^2 / ((a+b)(c+d)(a+c)(b+d)).
    a, b, c, d = 5000, 5000, 150, 50
    expected = (a + b + c + d) * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    statistic, p = class_mix(np.array([a, b]), np.array([c, d]))
    assert statistic == pytest.approx(expected) and p < 1e-10
    # A small reference is uncertain too: the same window is less surprising against it.
    _, p_small = class_mix(np.array([50, 50]), np.array([c, d]))
    assert p_small > p
    # A class the reference never predicted is surprising, not a division by zero.
    statistic, p = class_mix(np.array([1000, 0]), np.array([190, 10]))
    assert np.isfinite(statistic) and p < 1e-10
    assert class_mix(np.array([10, 0]), np.array([5, 0])) == (0.0, 1.0)


def test_every_feature_is_tested_with_a_bonferroni_threshold() -> None:
    reference = synthetic.reference()
    features, predicted, confidence = window_arrays(synthetic.window(), reference.classes)
    tests = run_tests(reference, features, predicted, confidence, alpha=0.01)
    assert [t.name for t in tests] == ["normal", "uniform", "confidence", "class_mix"]
    assert all(t.threshold == pytest.approx(0.01 / 4) for t in tests)
    assert not any(t.drifted for t in tests)
    shifted = window_arrays(synthetic.window(shift=1.0), reference.classes)
    found = {t.name: t for t in run_tests(reference, *shifted, alpha=0.01)}
    assert found["normal"].drifted and found["normal"].window_mean == pytest.approx(1.0, abs=0.2)
    assert not found["uniform"].drifted and not found["class_mix"].drifted


def test_false_alarms_stay_under_alpha_over_in_distribution_windows() -> None:
    reference = synthetic.reference()
    flagged = 0
    for seed in range(200):
        arrays = window_arrays(synthetic.window(seed=100 + seed), reference.classes)
        flagged += any(t.drifted for t in run_tests(reference, *arrays, alpha=0.05))
    # Bonferroni bounds the family-wise rate by alpha: 5% of 200 windows = 10 (plus slack).
    assert flagged <= 15
