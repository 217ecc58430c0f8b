"""One check of a window: drift tests, live accuracy, latency, and the decision they lead to.

The decision is the most severe of its reasons:

- ``retrain``: live accuracy (from feedback, once ``min_feedback`` labels are in) is lower
  than the reference accuracy by more than ``max_accuracy_drop``, beyond chance (one-sided
  binomial test at ``alpha``); or, with ``retrain_on_drift``, the inputs drifted *and* the
  predictions moved with them (confidence or class mix): a shift the model reacts to, which
  is worth retraining before labels say so.
- ``warn``: an accuracy under that floor but within chance; any other drift (a class mix
  that moved while the inputs did not is the world changing, not the model failing); latency
  over its SLO, or a new model version slower than the one it replaced beyond noise
  (:mod:`mltrail.monitor.audit`; retraining does not fix either); a gap in live accuracy
  between groups over ``fairness_max_gap`` beyond chance (:mod:`mltrail.monitor.fairness`).
- ``ok``: none of these; also when the window is too small to test (the reason says so).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from mltrail.config import MonitorParams
from mltrail.models.reference import Reference
from mltrail.monitor.audit import LatencyRegression
from mltrail.monitor.drift import DATA, PREDICTION, DriftTest, run_tests
from mltrail.monitor.fairness import check_groups
from mltrail.monitor.summary import scored_feedback
from mltrail.telemetry import Window

LEVELS = ("ok", "warn", "retrain")


@dataclass
class Reason:
    level: str
    check: str  # drift | accuracy | latency | volume | fairness
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "check": self.check, "message": self.message}


@dataclass
class Check:
    """What ``mltrail monitor`` found in one window, and what it decided."""

    decision: str
    reasons: list[Reason]
    model_version: str | None
    predictions: int
    tests: list[DriftTest] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    """Live accuracy per group (:mod:`mltrail.monitor.fairness`); empty when no labelled
    prediction named a group."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    time: float = field(default_factory=time.time)

    @property
    def drifted(self) -> list[DriftTest]:
        return [t for t in self.tests if t.drifted]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "decision": self.decision,
            "reasons": [r.as_dict() for r in self.reasons],
            "model_version": self.model_version,
            "predictions": self.predictions,
            "window": self.window,
            "drift": [t.as_dict() for t in self.tests],
            "accuracy": self.accuracy,
            "latency": self.latency,
            "fairness": self.fairness,
        }


def window_arrays(
    window: Window, classes: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(profile feature -> values, predicted class indices, confidences) of a window."""
    predictions = window.predictions
    names = sorted({k for p in predictions for k in p.profile})
    features = {
        n: np.array([p.profile[n] for p in predictions if n in p.profile], np.float64)
        for n in names
    }
    index = {c: i for i, c in enumerate(classes)}
    predicted = np.array(
        [index.get(p.class_name, int(p.label)) for p in predictions], dtype=np.int64
    )
    confidence = np.array([p.confidence for p in predictions], dtype=np.float64)
    return features, predicted, confidence


def _fmt_test(t: DriftTest) -> str:
    shift = ""
    if t.reference_mean is not None and t.window_mean is not None:
        shift = f", mean {t.reference_mean:.4g} -> {t.window_mean:.4g}"
    return f"{t.name} ({t.method} {t.statistic:.3g}, p={t.p_value:.2g}{shift})"


def check_window(
    window: Window,
    reference: Reference,
    params: MonitorParams,
    model_version: str | None = None,
    reference_accuracy: float | None = None,
    regression: LatencyRegression | None = None,
) -> Check:
    """Test ``window`` against ``reference`` and decide. ``reference_accuracy`` defaults to the
    model's accuracy on the reference (held-out) data; ``regression``: the latency test
    against the version this one replaced (:func:`mltrail.monitor.audit.audit_latency`)."""
    n = len(window.predictions)
    reasons: list[Reason] = []
    check = Check("ok", reasons, model_version, n)
    if n:
        check.window = {"from": window.predictions[0].time, "to": window.predictions[-1].time}

    check.latency, latency_reasons = _latency(window, params, regression)
    reasons.extend(latency_reasons)
    check.accuracy, accuracy_reasons = _accuracy(window, reference, params, reference_accuracy)
    reasons.extend(accuracy_reasons)

    groups = check_groups(window, len(reference.classes), params)
    if groups is not None:
        check.fairness = groups.as_dict()
        reasons.append(Reason(groups.level, "fairness", groups.why))
        reasons.extend(Reason("ok", "fairness", note) for note in groups.notes)

    if n < params.min_predictions:
        reasons.append(
            Reason(
                "ok",
                "volume",
                f"{n} predictions in the window: drift is tested from {params.min_predictions}",
            )
        )
    else:
        features, predicted, confidence = window_arrays(window, reference.classes)
        check.tests = run_tests(reference, features, predicted, confidence, params.alpha)
        data = [t for t in check.tests if t.drifted and t.group == DATA]
        output = [t for t in check.tests if t.drifted and t.group == PREDICTION]
        if data or output:
            level = "retrain" if data and output and params.retrain_on_drift else "warn"
            what = (
                "inputs and predictions drifted"
                if data and output
                else "inputs drifted"
                if data
                else "predictions drifted"
            )
            detail = "; ".join(_fmt_test(t) for t in data + output)
            reasons.append(Reason(level, "drift", f"{what}: {detail}"))
    levels = [LEVELS.index(r.level) for r in reasons]
    check.decision = LEVELS[max(levels, default=0)]
    return check


def _latency(
    window: Window, params: MonitorParams, regression: LatencyRegression | None
) -> tuple[dict[str, Any], list[Reason]]:
    """The window's latency against its SLO, and against the version it replaced."""
    n = len(window.predictions)
    latency: dict[str, Any] = {}
    reasons: list[Reason] = []
    latencies = np.array([p.inference_ms for p in window.predictions], dtype=np.float64)
    if n:
        p95, p99 = (float(v) for v in np.percentile(latencies, [95, 99]))
        slo = params.latency
        latency = {
            "p50_ms": float(np.median(latencies)),
            "p95_ms": p95,
            "p99_ms": p99,
            "slo_p95_ms": slo.p95_ms,
            "slo_p99_ms": slo.p99_ms,
        }
        for name, value, limit in (("p95", p95, slo.p95_ms), ("p99", p99, slo.p99_ms)):
            if value > limit:
                reasons.append(
                    Reason(
                        "warn",
                        "latency",
                        f"{name} latency {value:.1f} ms is over its SLO of {limit:.0f} ms",
                    )
                )

    if regression is not None:
        latency["regression"] = regression.as_dict()
        if regression.slower or not regression.tested:
            level = "warn" if regression.slower else "ok"
            reasons.append(Reason(level, "latency", regression.message))

    return latency, reasons


def _accuracy(
    window: Window,
    reference: Reference,
    params: MonitorParams,
    reference_accuracy: float | None,
) -> tuple[dict[str, Any], list[Reason]]:
    """Live accuracy from the window's feedback against the reference's."""
    reasons: list[Reason] = []
    expected = reference.accuracy if reference_accuracy is None else reference_accuracy
    labelled, out_of_range = scored_feedback(window, len(reference.classes))
    correct = sum(int(p.label) == window.feedback[p.prediction_id] for p in labelled)
    live = correct / len(labelled) if labelled else None
    accuracy: dict[str, Any] = {
        "labelled": len(labelled),
        "live": live,
        "reference": expected,
        "max_drop": params.max_accuracy_drop,
        "out_of_range": out_of_range,
    }
    if out_of_range:
        reasons.append(
            Reason(
                "ok",
                "accuracy",
                f"{out_of_range} feedback labels are not class indices of the model "
                f"(0-{len(reference.classes) - 1}): skipped, not scored",
            )
        )
    enough = live is not None and len(labelled) >= params.min_feedback
    floor = expected - params.max_accuracy_drop
    if enough and live is not None and live < floor:
        # A few hundred labels measure accuracy to a few points: retrain only when the live
        # accuracy is below the allowed floor beyond chance (one-sided binomial test at
        # alpha), so that noise does not retrain a model that is fine.
        p_value = float(
            stats.binomtest(correct, len(labelled), max(floor, 0.0), alternative="less").pvalue
        )
        accuracy["p_value"] = p_value
        if p_value < params.alpha:
            reasons.append(
                Reason(
                    "retrain",
                    "accuracy",
                    f"live accuracy {live:.3f} on {len(labelled)} labelled predictions is "
                    f"{expected - live:.3f} below the reference {expected:.3f} (allowed drop "
                    f"{params.max_accuracy_drop}; p={p_value:.2g})",
                )
            )
        else:
            reasons.append(
                Reason(
                    "warn",
                    "accuracy",
                    f"live accuracy {live:.3f} on {len(labelled)} labelled predictions is below "
                    f"{floor:.3f}, but not beyond chance (p={p_value:.2g})",
                )
            )

    return accuracy, reasons
