"""A window of telemetry condensed: volume, class mix, confidence, latency, inputs, accuracy."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from mltrail.telemetry import Prediction, Window


def scored_feedback(window: Window, classes: int | None) -> tuple[list[Prediction], int]:
    """The window's predictions whose feedback label is a class index of the model (``0`` to
    ``classes - 1``; any when ``classes`` is None), and how many labelled ones were left out.
    An out-of-range label is not a wrong answer: it says nothing about the model (a client's
    mistake, or a label from before the server checked them), so it is skipped and counted
    rather than scored, which would read as a drop in accuracy and retrain."""
    labelled = [p for p in window.predictions if p.prediction_id in window.feedback]
    if classes is None:
        return labelled, 0
    kept = [p for p in labelled if 0 <= window.feedback[p.prediction_id] < classes]
    return kept, len(labelled) - len(kept)


def _percentiles(values: list[float], points: tuple[int, ...]) -> dict[str, float]:
    if not values:
        return {}
    found = np.percentile(np.asarray(values, dtype=np.float64), points)
    return {f"p{p}": float(v) for p, v in zip(points, found, strict=True)}


def summarize(window: Window, classes: int | None = None) -> dict[str, Any]:
    """The window condensed; with ``classes`` (the model's class count), feedback labels out
    of that range are skipped and counted (``feedback.out_of_range``), not scored; without,
    every label is scored and ``out_of_range`` is None (not checked)."""
    predictions = window.predictions
    n = len(predictions)
    if n == 0:
        return {"predictions": 0}
    mix = Counter(p.class_name for p in predictions)
    confidence = [float(p.confidence) for p in predictions]
    latency = [float(p.inference_ms) for p in predictions]
    profile_keys = sorted({k for p in predictions for k in p.profile})
    inputs = {
        key: float(np.mean([p.profile[key] for p in predictions if key in p.profile]))
        for key in profile_keys
    }
    labelled, out_of_range = scored_feedback(window, classes)
    correct = sum(int(p.label) == window.feedback[p.prediction_id] for p in labelled)
    return {
        "predictions": n,
        "from": predictions[0].time,
        "to": predictions[-1].time,
        "endpoints": dict(Counter(p.endpoint for p in predictions)),
        "model_versions": dict(Counter(p.model_version for p in predictions)),
        "class_mix": {c: k / n for c, k in sorted(mix.items())},
        "confidence": {
            "mean": float(np.mean(confidence)),
            **_percentiles(confidence, (10, 50, 90)),
        },
        "inference_ms": _percentiles(latency, (50, 95, 99)),
        "inputs": inputs,
        "feedback": {
            "labelled": len(labelled),
            "accuracy": correct / len(labelled) if labelled else None,
            # None: not checked (no model named, so no class count), which a 0 would hide.
            "out_of_range": out_of_range if classes is not None else None,
        },
    }


def render_summary(summary: dict[str, Any]) -> str:
    """``summarize()`` as a few lines for a person (``mltrail monitor --json`` prints it all)."""
    n = summary["predictions"]
    if n == 0:
        return "no predictions in the window"

    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))

    def counts(items: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(items.items(), key=lambda kv: -kv[1]))

    def ms(values: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.2f} ms" for k, v in values.items())

    conf = summary["confidence"]
    feedback = summary["feedback"]
    accuracy = feedback["accuracy"]
    lines = [
        f"{n} predictions, {stamp(summary['from'])} to {stamp(summary['to'])} UTC",
        f"endpoints   {counts(summary['endpoints'])}",
        f"models      {counts(summary['model_versions'])}",
        "class mix   " + ", ".join(f"{c} {s:.1%}" for c, s in summary["class_mix"].items()),
        f"confidence  mean {conf['mean']:.3f}, "
        + ", ".join(f"{k} {v:.3f}" for k, v in conf.items() if k != "mean"),
        f"latency     {ms(summary['inference_ms'])} (model time)",
    ]
    if summary["inputs"]:
        lines.append(
            "inputs      " + ", ".join(f"{k} {v:.4g}" for k, v in summary["inputs"].items())
        )
    skipped = feedback.get("out_of_range")
    if skipped is None and feedback["labelled"]:
        checked = "; labels not checked against the model's classes (give --model)"
    else:
        checked = f"; {skipped} labels out of the model's classes skipped" if skipped else ""
    lines.append(
        f"feedback    {feedback['labelled']} labelled"
        + (f", live accuracy {accuracy:.3f}" if accuracy is not None else "")
        + checked
    )
    return "\n".join(lines)
