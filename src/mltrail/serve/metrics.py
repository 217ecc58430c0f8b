"""Prometheus metrics of one server: requests, latency, predictions, telemetry health."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mltrail.telemetry import Telemetry
from mltrail.telemetry.metrics import loss_families

if TYPE_CHECKING:
    from mltrail.models.loading import LoadedModel

ServedList = Callable[[], Sequence[tuple[str, "LoadedModel"]]]
"""() -> (kind, model) for each model serving now."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class _TelemetryCollector(Collector):
    """Reads the telemetry counters when Prometheus scrapes (no work per request)."""

    def __init__(self, telemetry: Callable[[], Telemetry | None]) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        telemetry = self._telemetry()
        if telemetry is None:
            return
        c = telemetry.counters
        yield GaugeMetricFamily(
            "mltrail_telemetry_queue_depth", "records waiting for the writer", value=telemetry.depth
        )
        yield CounterMetricFamily(
            "mltrail_telemetry_dropped", "records dropped: queue full", value=c.dropped_queue_full
        )
        exported = CounterMetricFamily(
            "mltrail_telemetry_exported", "records written, per sink", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "mltrail_telemetry_sink_dropped", "records dropped: retry buffer full", labels=["sink"]
        )
        failures = CounterMetricFamily(
            "mltrail_telemetry_sink_failures", "failed writes, per sink", labels=["sink"]
        )
        pending = GaugeMetricFamily(
            "mltrail_telemetry_sink_pending", "records kept for retry, per sink", labels=["sink"]
        )
        for sink, n in c.exported.items():
            exported.add_metric([sink], n)
            dropped.add_metric([sink], c.dropped_retry_full.get(sink, 0))
            failures.add_metric([sink], c.failures.get(sink, 0))
            pending.add_metric([sink], c.pending.get(sink, 0))
        yield from (exported, dropped, failures, pending)
        yield from loss_families(c)


class _ModelCollector(Collector):
    """``mltrail_model_info``: which model serves each kind now, read when Prometheus scrapes
    (a swap, by reload or by a followed alias, shows at the next scrape)."""

    def __init__(self, served: ServedList) -> None:
        self._served = served

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "mltrail_model_info",
            "the model serving each kind (always 1): its version (stage@sha256) and, for a "
            "models:/ source, the MLflow registry version",
            labels=["kind", "version", "registry_version"],
        )
        for kind, model in self._served():
            info.add_metric([kind, model.version, model.registry_version or ""], 1)
        yield info


class ServerMetrics:
    def __init__(
        self, telemetry: Callable[[], Telemetry | None], served: ServedList | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mltrail_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mltrail_request_seconds",
            "request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mltrail_predictions",
            "predictions per class",
            ["model", "class_name"],
            registry=self.registry,
        )
        self.confidence = Histogram(
            "mltrail_prediction_confidence",
            "confidence of predictions",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_TelemetryCollector(telemetry))
        if served is not None:
            self.registry.register(_ModelCollector(served))
