"""The temporal audit: how long each model version took to train and takes to answer, in one
record (:class:`TimingRecord`), and whether a new version answers slower than the one it
replaced (:func:`latency_regression`).

Where the figures come from:

- training: the model's manifest (``timings``: ``train_s``, ``predict_s``, ``stage_s``, written
  by every training stage), of the served model and of every promoted release;
- serving: the telemetry store, aggregated in SQL per model version
  (:meth:`~mltrail.telemetry.TelemetryStore.read_version_latency`).

"Slower beyond noise" is two conditions, both needed:

1. the new version's median ``inference_ms`` is at least ``monitor.latency.regression_ratio``
   times the old one's (a practical threshold: a 3 % slowdown that a large sample proves is
   real is not worth a warning);
2. a one-sided Mann-Whitney U test of the two versions' latencies (the newest
   :data:`AUDIT_SAMPLES` of each) says the new one's are larger, p < ``monitor.alpha`` (latency
   is skewed and heavy-tailed: a rank test, not a t-test).

With fewer than ``monitor.latency.regression_min_samples`` predictions of either version,
nothing is tested and the result says so. The version replaced is the one promoted before
the current one (``releases/history.jsonl``); without a history entry, the version the
endpoint served before the current one first answered (the telemetry order). The two
versions' samples come from different times: a machine busier during one of them shows as a
difference too, which the report's first/last times let a reader judge.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mltrail.config import MonitorParams
from mltrail.contracts.manifest import Manifest
from mltrail.fsio import read_json_lines
from mltrail.telemetry import TelemetryStore, VersionLatency

AUDIT_SAMPLES = 5000
"""The newest predictions of each version the regression test compares."""
TRAIN_UNITS = {"train_s": "s", "predict_s": "s", "stage_s": "s"}


@dataclass(frozen=True)
class TimingRecord:
    """One measured duration of one model version: a training stage's runtime (one value,
    ``n`` = 1) or its served predictions' model time (``n`` predictions summarised)."""

    source: Literal["train", "serve"]
    model_version: str
    what: str
    """``train_s``, ``predict_s``, ``stage_s`` (training) or ``inference_ms`` (serving)."""
    unit: Literal["s", "ms"]
    n: int
    median: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    first: float
    """Unix time of the first measurement (training: when the manifest was written)."""
    last: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_records(manifest: Manifest) -> list[TimingRecord]:
    """The training stage's runtimes, from the manifest's ``timings``."""
    created = datetime.strptime(manifest.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    at = created.timestamp()
    return [
        TimingRecord(
            "train", manifest.model_version, what, "s", 1, value, value, value, value, at, at
        )
        for what, value in sorted(manifest.timings.items())
        if what in TRAIN_UNITS
    ]


def serving_records(versions: list[VersionLatency]) -> list[TimingRecord]:
    """Per model version, its served predictions' model time (from the store's aggregate)."""
    return [
        TimingRecord(
            "serve",
            v.model_version,
            "inference_ms",
            "ms",
            v.latency.n,
            v.latency.p50_ms,
            v.latency.p95_ms,
            v.latency.p99_ms,
            v.mean_ms,
            v.first,
            v.last,
        )
        for v in versions
    ]


def read_history(
    path: Path, task: str | None = None, tail_bytes: int | None = None
) -> list[dict[str, Any]]:
    """The promotions in ``releases/history.jsonl`` (of ``task``), oldest first; ``[]`` when
    there is none. A line that is not JSON (a write cut short) is skipped. ``tail_bytes``:
    only the newest, read from the file's end (:func:`mltrail.fsio.read_json_lines`)."""
    records = read_json_lines(path, tail_bytes)
    found = [r for r in records if task is None or r.get("task") == task]
    return sorted(found, key=lambda r: float(r.get("time", 0.0)))


def replaced_version(
    current: str, history: list[dict[str, Any]], served: list[VersionLatency]
) -> str | None:
    """The version ``current`` replaced: the one promoted before it, else the one served
    before it first answered; ``None`` when it is the first."""
    versions = [str(r.get("version")) for r in history]
    if current in versions:
        last = len(versions) - 1 - versions[::-1].index(current)
        earlier = [v for v in versions[:last] if v != current]
        if earlier:
            return earlier[-1]
    order = [v.model_version for v in served]  # by first prediction
    if current in order:
        earlier = [v for v in order[: order.index(current)] if v != current]
        if earlier:
            return earlier[-1]
    return None


@dataclass(frozen=True)
class LatencyRegression:
    """Whether ``current`` answers slower than ``previous`` beyond noise (see the module)."""

    current: str
    previous: str
    tested: bool
    slower: bool
    n_current: int
    n_previous: int
    median_current_ms: float | None
    median_previous_ms: float | None
    ratio: float | None
    p_value: float | None
    threshold_ratio: float
    alpha: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_regression(
    current: str,
    previous: str,
    current_ms: list[float],
    previous_ms: list[float],
    params: MonitorParams,
) -> LatencyRegression:
    """Test whether ``current``'s latencies are larger than ``previous``'s beyond noise."""
    from scipy import stats  # type: ignore[import-untyped]

    ratio_limit = params.latency.regression_ratio
    least = params.latency.regression_min_samples
    n_cur, n_prev = len(current_ms), len(previous_ms)
    med_cur = statistics.median(current_ms) if current_ms else None
    med_prev = statistics.median(previous_ms) if previous_ms else None

    def result(
        tested: bool, slower: bool, ratio: float | None, p: float | None, message: str
    ) -> LatencyRegression:
        return LatencyRegression(
            current, previous, tested, slower, n_cur, n_prev, med_cur, med_prev, ratio, p,
            ratio_limit, params.alpha, message,
        )  # fmt: skip

    if n_cur < least or n_prev < least or med_cur is None or med_prev is None:
        return result(
            False,
            False,
            None,
            None,
            f"latency of {current} against {previous} not tested: {n_cur} and {n_prev} "
            f"predictions, {least} of each needed",
        )
    ratio = med_cur / med_prev if med_prev > 0 else float("inf")
    p_value = float(
        stats.mannwhitneyu(
            np.asarray(current_ms), np.asarray(previous_ms), alternative="greater"
        ).pvalue
    )
    slower = p_value < params.alpha and ratio >= ratio_limit
    verdict = "slower than" if slower else "not slower, beyond noise, than"
    return result(
        True,
        slower,
        ratio,
        p_value,
        f"model {current} is {verdict} {previous}, the version it replaced: median "
        f"{med_cur:.2f} ms vs {med_prev:.2f} ms ({ratio:.2f}x, threshold {ratio_limit}x), "
        f"Mann-Whitney U p={p_value:.2g} (alpha {params.alpha}) on {n_cur} and {n_prev} "
        "predictions",
    )


def audit_latency(
    store: TelemetryStore,
    endpoint: str,
    current: str,
    params: MonitorParams,
    history: list[dict[str, Any]] | None = None,
) -> LatencyRegression | None:
    """The regression test of ``current`` against the version it replaced, on the store's
    newest :data:`AUDIT_SAMPLES` predictions of each; ``None`` when it replaced none."""
    served = store.read_version_latency(endpoint)
    previous = replaced_version(current, history or [], served)
    if previous is None:
        return None
    return latency_regression(
        current,
        previous,
        store.read_latencies(current, endpoint, AUDIT_SAMPLES),
        store.read_latencies(previous, endpoint, AUDIT_SAMPLES),
        params,
    )
