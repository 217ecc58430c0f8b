"""The Prometheus families of what telemetry refused or could not keep: quarantined records,
unreadable spill lines, spill writes that failed. Read from :class:`Counters` when
Prometheus scrapes (``mltrail.serve.metrics`` yields them beside the queue's own)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

from mltrail.telemetry.queue import Counters


def loss_families(c: Counters) -> Iterator[CounterMetricFamily]:
    quarantined = CounterMetricFamily(
        "mltrail_telemetry_quarantined",
        "records a sink refused for their data, kept in its quarantine file",
        labels=["sink"],
    )
    spill_failed = CounterMetricFamily(
        "mltrail_telemetry_spill_failed",
        "records lost because the spill file could not be written",
        labels=["sink"],
    )
    for sink, n in c.quarantined.items():
        quarantined.add_metric([sink], n)
        spill_failed.add_metric([sink], c.spill_failed.get(sink, 0))
    yield quarantined
    yield spill_failed
    yield CounterMetricFamily(
        "mltrail_telemetry_spill_bad_lines",
        "spill-file lines that could not be read back (skipped)",
        value=c.spill_bad_lines,
    )
