"""``monitor.prom``: one check as Prometheus gauges, written with prometheus_client.

The file is in the text format that node_exporter's textfile collector reads (point its
``--collector.textfile.directory`` at the monitor's output folder; deploy/prometheus/ has the
scrape configuration and the alert rules that read these gauges). It is written by
``prometheus_client.write_to_textfile``, which writes a temporary file and renames it, so a
scrape never sees half a file. The names follow Prometheus's conventions, as ``promtool check
metrics`` checks them: base units (seconds), no ``quantile`` label outside a summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from mltrail.monitor.policy import LEVELS, Check

PREFIX = "mltrail_monitor_"
PERCENTILES = ("p50", "p95", "p99")


class _Gauges:
    """Makes a check's gauges in one registry, each labelled by task and model version."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self.registry = registry
        self.labels = labels

    def __call__(self, name: str, doc: str, *extra: str) -> Gauge:
        return Gauge(PREFIX + name, doc, [*self.labels, *extra], registry=self.registry)

    def set(self, name: str, doc: str, value: float | None) -> None:
        """One unlabelled-beyond-the-base gauge; left out when there is no value."""
        if value is not None:
            self(name, doc).labels(**self.labels).set(value)


def check_registry(check: Check, task: str) -> CollectorRegistry:
    """A registry holding one check's gauges, labelled by task and model version."""
    registry = CollectorRegistry()
    labels = {"task": task, "model_version": check.model_version or ""}
    gauges = _Gauges(registry, labels)
    gauges.set(
        "decision", "the check's decision: 0 ok, 1 warn, 2 retrain", LEVELS.index(check.decision)
    )
    gauges.set("predictions", "predictions in the checked window", check.predictions)
    gauges.set("check_timestamp_seconds", "when the check ran (Unix time)", check.time)
    gauges.set(
        "live_accuracy", "accuracy on the window's labelled predictions", check.accuracy.get("live")
    )
    gauges.set("labelled", "labelled predictions in the window", check.accuracy.get("labelled"))
    latency = gauges(
        "latency_seconds",
        "per-prediction model time in the window, at a percentile (p50, p95, p99)",
        "percentile",
    )
    for p in PERCENTILES:
        ms = check.latency.get(f"{p}_ms")
        if ms is not None:
            latency.labels(**labels, percentile=p).set(ms / 1000)
    statistic = gauges(
        "drift_statistic",
        "KS statistic (chi-square for class_mix) of each drift test",
        "test",
        "group",
    )
    p_value = gauges("drift_p_value", "p-value of each drift test", "test", "group")
    drifted = gauges("drifted", "1 when the test's p-value is under its threshold", "test", "group")
    for t in check.tests:
        which = {**labels, "test": t.name, "group": t.group}
        statistic.labels(**which).set(t.statistic)
        p_value.labels(**which).set(t.p_value)
        drifted.labels(**which).set(float(t.drifted))
    _fairness_gauges(gauges, check.fairness)
    return registry


def _fairness_gauges(gauges: _Gauges, fairness: dict[str, Any]) -> None:
    """Live accuracy per group (:mod:`mltrail.monitor.fairness`), when the window had labelled
    predictions that named one; the gap and its level for an alert of its own (a gap between
    groups is a warning, never a retrain decision, so MltrailRetrainDecision would not fire)."""
    if not fairness:
        return
    groups = fairness.get("groups", [])
    accuracy = gauges("group_live_accuracy", "live accuracy of one group's predictions", "group")
    labelled = gauges("group_labelled", "labelled predictions of one group", "group")
    for g in groups:
        accuracy.labels(**gauges.labels, group=g["group"]).set(g["accuracy"])
        labelled.labels(**gauges.labels, group=g["group"]).set(g["labelled"])
    gauges.set(
        "group_accuracy_gap",
        "best minus worst live accuracy of the tested groups",
        fairness.get("gap"),
    )
    gauges.set(
        "group_gap_p_value", "Fisher's exact test, best vs worst group", fairness.get("p_value")
    )
    gauges.set(
        "fairness_decision",
        "the per-group accuracy check's level: 0 ok, 1 warn",
        LEVELS.index(fairness.get("level", "ok")),
    )


def write_prom(check: Check, task: str, path: Path) -> None:
    """Write ``path`` atomically (a temporary file beside it, then a rename)."""
    write_to_textfile(str(path), check_registry(check, task))
