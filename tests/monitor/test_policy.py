"""The decision: ok, warn or retrain, with the reasons that led to it; and its records."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mltrail.config import LatencySlo, MonitorParams
from mltrail.monitor.policy import check_window
from mltrail.monitor.report import read_decisions, write_outputs
from tests.monitor import synthetic

PARAMS = MonitorParams(window=200, min_predictions=100, alpha=0.01, min_feedback=30)


def _decide(**window: object) -> tuple[str, list[str]]:
    check = check_window(synthetic.window(**window), synthetic.reference(), PARAMS)  # type: ignore[arg-type]
    return check.decision, [f"{r.level}:{r.check}" for r in check.reasons]


def test_in_distribution_traffic_is_ok() -> None:
    assert _decide() == ("ok", [])


def test_input_drift_that_moves_the_predictions_means_retrain() -> None:
    decision, reasons = _decide(shift=1.0, confidence=(0.5, 0.7))
    assert decision == "retrain" and reasons == ["retrain:drift"]


def test_input_drift_alone_or_a_new_class_mix_alone_is_a_warning() -> None:
    assert _decide(shift=1.0) == ("warn", ["warn:drift"])
    assert _decide(positive=0.9) == ("warn", ["warn:drift"])
    no_drift_retrain = MonitorParams(retrain_on_drift=False)
    check = check_window(
        synthetic.window(shift=1.0, confidence=(0.5, 0.7)), synthetic.reference(),
        no_drift_retrain,
    )  # fmt: skip
    assert check.decision == "warn"


def test_an_accuracy_drop_means_retrain_once_enough_labels_are_in() -> None:
    decision, reasons = _decide(correct=0.6, labelled=100)
    assert decision == "retrain" and reasons == ["retrain:accuracy"]
    assert _decide(correct=0.6, labelled=20) == ("ok", [])  # 20 < min_feedback
    assert _decide(correct=0.88, labelled=100) == ("ok", [])  # within the allowed drop


def test_an_accuracy_dip_within_chance_is_a_warning() -> None:
    window = synthetic.window(correct=0.8, labelled=40)
    check = check_window(window, synthetic.reference(), PARAMS)
    live = check.accuracy["live"]
    assert live < 0.9 - 0.05  # under the floor...
    assert check.decision == "warn" and check.accuracy["p_value"] > PARAMS.alpha  # ...by chance
    assert [r.check for r in check.reasons] == ["accuracy"]


def test_latency_over_its_slo_is_a_warning_not_a_retrain() -> None:
    params = MonitorParams(latency=LatencySlo(p95_ms=5, p99_ms=10))
    check = check_window(synthetic.window(latency_ms=20.0), synthetic.reference(), params)
    assert check.decision == "warn"
    assert [r.check for r in check.reasons] == ["latency", "latency"]
    assert check.latency["p95_ms"] == 20.0


def test_a_small_window_is_not_tested_and_says_so() -> None:
    check = check_window(synthetic.window(n=50, shift=3.0), synthetic.reference(), PARAMS)
    assert check.decision == "ok" and check.tests == []
    assert "50 predictions" in check.reasons[0].message


def test_a_check_leaves_a_report_gauges_and_a_decision_record(tmp_path: Path) -> None:
    reference = synthetic.reference()
    for shift in (0.0, 1.0):
        window = synthetic.window(shift=shift, confidence=(0.5, 0.7) if shift else (0.5, 1.0),
                                  labelled=40)  # fmt: skip
        check = check_window(window, reference, PARAMS, model_version="m@1")
        paths = write_outputs(tmp_path, check, "text", reference, window, history=window)
    html = paths["html"].read_text()
    assert "RETRAIN" in html and html.count("data:image/png;base64,") == 2
    record = json.loads(paths["json"].read_text())
    assert record["decision"] == "retrain" and record["task"] == "text"
    assert {t["name"] for t in record["drift"] if t["drifted"]} >= {"normal", "confidence"}
    assert [d["decision"] for d in read_decisions(tmp_path)] == ["ok", "retrain"]
    families = {f.name: f for f in text_string_to_metric_families(paths["prom"].read_text())}
    (decision,) = families["mltrail_monitor_decision"].samples
    assert decision.value == 2 and decision.labels == {"task": "text", "model_version": "m@1"}
    drifted = {s.labels["test"]: s.value for s in families["mltrail_monitor_drifted"].samples}
    assert drifted["normal"] == 1.0 and drifted["uniform"] == 0.0
    accuracy = families["mltrail_monitor_live_accuracy"].samples[0].value
    assert accuracy == record["accuracy"]["live"]
