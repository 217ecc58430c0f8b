"""Figures over many predictions, computed by the store in SQL (the status page's, and the
latency history per model version that the temporal audit reads): a million rows never cross
into Python, only one row per time bucket, class, confidence bin or latency bin.

Latency percentiles: per model version over all time (the temporal audit), PostgreSQL computes
them exactly (``percentile_cont``). SQLite has no percentile function, and the status page's
time buckets must add up across views (:mod:`mltrail.telemetry.bucket_cache`), so there every
store counts predictions per latency bin in SQL, bins spaced by a factor of
:data:`LATENCY_BIN_RATIO` from :data:`LATENCY_BIN_FLOOR_MS`, and a percentile is read off the
cumulative counts as the bin's geometric middle: within ``sqrt(1.05) - 1``, about 2.5 %, of the
exact value (:func:`percentiles_from_bins`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PERCENTILES = (0.5, 0.95, 0.99)
LATENCY_BIN_RATIO = 1.05
"""Consecutive latency bins' edges differ by this factor (SQLite's percentiles)."""
LATENCY_BIN_FLOOR_MS = 0.001
"""Latencies below this fall into the first bin."""
CONFIDENCE_BINS = 20
"""The confidence histogram's bins, of width 1/20 over [0, 1]."""


@dataclass(frozen=True)
class Latency:
    """Percentiles of ``inference_ms`` over ``n`` predictions (``None`` when ``n`` is 0)."""

    n: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class TimeBucket:
    """The predictions made in [start, start + width)."""

    start: float
    requests: int
    mean_confidence: float
    latency: Latency


@dataclass(frozen=True)
class VersionLatency:
    """Every prediction one model version made on an endpoint: how many, when, how fast."""

    model_version: str
    first: float
    last: float
    latency: Latency
    mean_ms: float


@dataclass(frozen=True)
class Traffic:
    """What an endpoint served in [since, until): the page's live figures."""

    since: float
    until: float
    bucket_s: float
    buckets: list[TimeBucket] = field(default_factory=list)
    """Only buckets that hold predictions, oldest first."""
    class_mix: dict[str, int] = field(default_factory=dict)
    confidence_bins: list[int] = field(default_factory=list)
    """Predictions per confidence bin (:data:`CONFIDENCE_BINS` of them)."""
    versions: list[VersionLatency] = field(default_factory=list)
    """Each model version's predictions in the period, oldest version first."""

    @property
    def requests(self) -> int:
        return sum(b.requests for b in self.buckets)


def latency_bin_edges(index: int) -> tuple[float, float]:
    """The [low, high) milliseconds of latency bin ``index``."""
    low = LATENCY_BIN_FLOOR_MS * LATENCY_BIN_RATIO**index
    return low, low * LATENCY_BIN_RATIO


def percentiles_from_bins(counts: Iterable[tuple[int, int]]) -> Latency:
    """The percentiles of a latency histogram given as (bin index, count) pairs: for each,
    the geometric middle of the bin where the cumulative count first reaches it."""
    ordered = sorted(counts)
    n = sum(c for _, c in ordered)
    if n == 0:
        return Latency(0, None, None, None)
    found: list[float] = []
    for q in PERCENTILES:
        rank = q * n
        seen = 0
        for index, count in ordered:
            seen += count
            if seen >= rank:
                low, high = latency_bin_edges(index)
                found.append(math.sqrt(low * high))
                break
    return Latency(n, *found)


def latency_from_exact(n: int, values: Sequence[float | None] | None) -> Latency:
    """A :class:`Latency` from a database's exact percentiles (in :data:`PERCENTILES`'
    order)."""
    if not n or values is None:
        return Latency(n, None, None, None)
    p50, p95, p99 = (None if v is None else float(v) for v in values)
    return Latency(n, p50, p95, p99)


@dataclass
class VersionCounts:
    """One model version's predictions in one time bucket, in a form that adds up."""

    requests: int
    first: float
    last: float
    ms_sum: float
    latency_bins: dict[int, int] = field(default_factory=dict)

    def add(self, other: VersionCounts) -> None:
        self.requests += other.requests
        self.first, self.last = min(self.first, other.first), max(self.last, other.last)
        self.ms_sum += other.ms_sum
        _add_counts(self.latency_bins, other.latency_bins)


@dataclass
class BucketCounts:
    """What the store counted in one time bucket: counts and sums only, so buckets read at
    different times merge exactly (percentiles come from the merged latency bins)."""

    requests: int = 0
    confidence_sum: float = 0.0
    classes: dict[str, int] = field(default_factory=dict)
    confidence_bins: dict[int, int] = field(default_factory=dict)
    versions: dict[str, VersionCounts] = field(default_factory=dict)


def _add_counts(into: dict[int, int], counts: dict[int, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


def traffic_from_buckets(
    since: float, until: float, width: float, counts: dict[int, BucketCounts]
) -> Traffic:
    """The :class:`Traffic` of buckets counted by the store (index ``i`` starts at
    ``i * width``): per bucket, per class and confidence bin, per model version."""
    traffic = Traffic(since, until, width)
    histogram = [0] * CONFIDENCE_BINS
    classes: dict[str, int] = {}
    versions: dict[str, VersionCounts] = {}
    for index in sorted(counts):
        bucket = counts[index]
        if not bucket.requests:
            continue
        latency_bins: dict[int, int] = {}
        for name, version in bucket.versions.items():
            _add_counts(latency_bins, version.latency_bins)
            merged = versions.setdefault(name, VersionCounts(0, version.first, version.last, 0.0))
            merged.add(version)
        mean_confidence = bucket.confidence_sum / bucket.requests
        latency = percentiles_from_bins(latency_bins.items())
        traffic.buckets.append(TimeBucket(index * width, bucket.requests, mean_confidence, latency))
        for name, n in bucket.classes.items():
            classes[name] = classes.get(name, 0) + n
        for b, n in bucket.confidence_bins.items():
            histogram[min(max(b, 0), CONFIDENCE_BINS - 1)] += n
    traffic.confidence_bins.extend(histogram)
    traffic.class_mix.update(sorted(classes.items(), key=lambda kv: (-kv[1], kv[0])))
    traffic.versions.extend(
        sorted(
            (
                VersionLatency(
                    name,
                    v.first,
                    v.last,
                    percentiles_from_bins(v.latency_bins.items()),
                    v.ms_sum / v.requests,
                )
                for name, v in versions.items()
            ),
            key=lambda v: (v.first, v.model_version),
        )
    )
    return traffic
