"""Feedback labels that are not class indices of the model (5 on a 2-class model, 2^63 - 1)
are skipped and counted, not scored as wrong answers: they would read as an accuracy drop
and retrain a model that is fine."""

from __future__ import annotations

from mltrail.config import MonitorParams
from mltrail.monitor.policy import check_window
from mltrail.monitor.summary import render_summary, summarize
from mltrail.telemetry import Window
from tests.monitor import synthetic

PARAMS = MonitorParams(window=200, min_predictions=100, alpha=0.01, min_feedback=30)


def _with_bad_labels(bad: int) -> Window:
    window = synthetic.window(correct=0.95, labelled=60)  # right 95% of 60 labels
    for i, label in zip(range(60, 60 + bad), [5, 2, 2**63 - 1] * bad, strict=False):
        window.feedback[f"p{i}"] = label
    return window


def test_out_of_range_labels_are_skipped_and_counted_not_scored_as_wrong() -> None:
    window = _with_bad_labels(100)
    check = check_window(window, synthetic.reference(), PARAMS)
    assert check.decision == "ok", check.reasons
    assert check.accuracy["labelled"] == 60 and check.accuracy["out_of_range"] == 100
    assert check.accuracy["live"] > 0.9
    [reason] = [r for r in check.reasons if r.check == "accuracy"]
    assert reason.level == "ok"
    assert "100 feedback labels are not class indices of the model (0-1)" in reason.message


def test_the_summary_says_how_many_labels_it_skipped() -> None:
    summary = summarize(_with_bad_labels(7), classes=2)
    assert summary["feedback"]["labelled"] == 60 and summary["feedback"]["out_of_range"] == 7
    assert "; 7 labels out of the model's classes skipped" in render_summary(summary)
    unchecked = summarize(_with_bad_labels(7))  # no class count: nothing to check against
    assert unchecked["feedback"]["out_of_range"] is None
    assert "labels not checked against the model's classes (give --model)" in render_summary(
        unchecked
    )
