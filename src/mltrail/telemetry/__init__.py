"""Telemetry: one record per prediction (and per feedback, per captured input), written by the
server without ever holding up a request, read back by the monitor and the retrain loop.

========================  ==========================================================
``record``                the typed record (:class:`Prediction`, :class:`Feedback`,
                          :class:`Capture`), a read :class:`Window`, :class:`Labelled` rows
``queue``                 the bounded non-blocking queue and its writer thread
                          (:class:`Telemetry`): batches, retries, drop counts, spill files
``stores``                a store per URI scheme (SQLite, PostgreSQL): write, read windows
                          and labelled rows, migrate a versioned schema (:func:`open_store`)
``aggregate``             figures the store computes in SQL: traffic per time bucket,
                          latency percentiles, class mix, per model version latency
``sinks``                 write-only sinks (W&B, MLflow); :func:`build_sinks`
``settings``              :class:`TelemetrySettings`, the default store, its variable
========================  ==========================================================

It sits below ``serve`` and ``monitor``, which both use it, and imports neither.
"""

from __future__ import annotations

from contextlib import closing

from mltrail.telemetry.aggregate import Latency, TimeBucket, Traffic, VersionLatency
from mltrail.telemetry.queue import Counters, Sink, Telemetry
from mltrail.telemetry.record import (
    Capture,
    Feedback,
    Filter,
    Labelled,
    Prediction,
    Record,
    Window,
)
from mltrail.telemetry.settings import (
    DEFAULT_STORE,
    STORE_ENV,
    TelemetrySettings,
    default_store,
    store_from_env,
)
from mltrail.telemetry.sinks import build_sinks
from mltrail.telemetry.stores import open_store, store_kinds
from mltrail.telemetry.stores.base import WINDOW_LIMIT, TelemetryStore

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "Capture",
    "Counters",
    "Feedback",
    "Filter",
    "Labelled",
    "Latency",
    "Prediction",
    "Record",
    "Sink",
    "Telemetry",
    "TelemetrySettings",
    "TelemetryStore",
    "TimeBucket",
    "Traffic",
    "VersionLatency",
    "Window",
    "build_sinks",
    "default_store",
    "open_store",
    "read_labelled",
    "read_window",
    "store_from_env",
    "store_kinds",
]


def read_window(
    store: str,
    since: float | None = None,
    until: float | None = None,
    endpoint: str | None = None,
    limit: int = WINDOW_LIMIT,
    model_version: str | None = None,
) -> Window:
    """``open_store(store).read_window(...)``: the newest ``limit`` predictions in
    [since, until) (of ``endpoint``, of ``model_version``), with their feedback."""
    with closing(open_store(store)) as opened:
        return opened.read_window(Filter(since, until, endpoint, model_version), limit)


def read_labelled(store: str, endpoint: str, after: float = 0.0) -> list[Labelled]:
    """``open_store(store).read_labelled(...)``: captured inputs of ``endpoint`` served after
    ``after`` that have feedback."""
    with closing(open_store(store)) as opened:
        return opened.read_labelled(endpoint, after)
