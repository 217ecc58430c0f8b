"""The status page's closed time buckets kept in memory (telemetry.bucket_cache), over both
stores: a view after the first reads only the newest rows, yet gives the same figures as a
full read; late rows show once a kept bucket expires."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mltrail.telemetry import TelemetryStore
from mltrail.telemetry.aggregate import BucketCounts, traffic_from_buckets
from mltrail.telemetry.bucket_cache import SETTLE_S, TTL_S, BucketCache
from mltrail.telemetry.stores.base import SQLStore
from tests.telemetry.test_aggregates import _traffic

WIDTH = 50.0


def _reader(store: TelemetryStore) -> tuple[list[tuple[float, float]], object]:
    """A fetch on the real store that records the ranges it was asked for."""
    assert isinstance(store, SQLStore)
    asked: list[tuple[float, float]] = []

    def fetch(since: float, until: float) -> dict[int, BucketCounts]:
        asked.append((since, until))
        return store._bucket_counts(since, until, WIDTH, "/predict/text")

    return asked, fetch


def _summary(counts: dict[int, BucketCounts], since: float, until: float) -> object:
    traffic = traffic_from_buckets(since, until, WIDTH, counts)
    return (
        [(b.start, b.requests, round(b.mean_confidence, 9), b.latency) for b in traffic.buckets],
        traffic.class_mix,
        traffic.confidence_bins,
        [
            (v.model_version, v.first, v.last, v.latency, round(v.mean_ms, 9))
            for v in traffic.versions
        ],
    )


def test_a_second_view_reads_only_the_open_buckets_and_agrees_with_a_full_read(
    store: TelemetryStore,
) -> None:
    store.write(_traffic())  # 600 predictions at t = 1000 .. 1599
    asked, fetch = _reader(store)
    cache = BucketCache()
    since, until, now = 1010.0, 1610.0, 1450.0 + SETTLE_S  # buckets up to t=1450 closed
    first = cache.read(fetch, since, until, WIDTH, "/predict/text", now=now)  # type: ignore[arg-type]
    # The partial first bucket [1010, 1050), then everything from 1050.
    assert asked == [(1010.0, 1050.0), (1050.0, 1610.0)]
    full = store._bucket_counts(since, until, WIDTH, "/predict/text")  # type: ignore[attr-defined]
    assert _summary(first, since, until) == _summary(full, since, until)
    assert sum(b.requests for b in first.values()) == 590

    asked.clear()
    second = cache.read(fetch, since, until, WIDTH, "/predict/text", now=now + 1)  # type: ignore[arg-type]
    # Kept: [1050, 1450). Read again: the partial first bucket and [1450, 1610).
    assert asked == [(1010.0, 1050.0), (1450.0, 1610.0)]
    assert _summary(second, since, until) == _summary(full, since, until)


def test_rows_arriving_late_show_once_their_kept_bucket_expires(store: TelemetryStore) -> None:
    store.write(_traffic())
    _, fetch = _reader(store)
    cache = BucketCache()
    since, until, now = 1000.0, 1600.0, 5000.0  # every bucket closed
    before = cache.read(fetch, since, until, WIDTH, "/predict/text", now=now)  # type: ignore[arg-type]
    assert sum(b.requests for b in before.values()) == 600
    late = [
        replace(p, prediction_id=f"late{i}", time=1100.0 + i) for i, p in enumerate(_traffic()[:7])
    ]
    store.write(late)  # a spill replayed after an outage: rows in a kept bucket
    kept = cache.read(fetch, since, until, WIDTH, "/predict/text", now=now + 1)  # type: ignore[arg-type]
    assert sum(b.requests for b in kept.values()) == 600  # within TTL_S: not yet
    expired = cache.read(fetch, since, until, WIDTH, "/predict/text", now=now + TTL_S + 1)  # type: ignore[arg-type]
    assert sum(b.requests for b in expired.values()) == 607
    assert expired[1100 // int(WIDTH)].requests == 50 + 7


def test_the_store_keeps_closed_buckets_between_views(store: TelemetryStore) -> None:
    """Through the store's own read_traffic (the page's call): the same figures twice, and a
    new prediction in the open bucket counted at once."""
    import time

    now = time.time()
    rows = [replace(p, time=now - 3000 + 4 * i) for i, p in enumerate(_traffic())]
    rows[-1] = replace(rows[-1], time=now - 1)  # in the newest bucket, still open
    store.write(rows[:-1])
    since, until = now - 3600, now + 1
    first = store.read_traffic(since, until, 60, "/predict/text")
    again = store.read_traffic(since, until, 60, "/predict/text")
    assert first.requests == again.requests == 599
    assert [(b.start, b.requests, b.latency) for b in first.buckets] == [
        (b.start, b.requests, b.latency) for b in again.buckets
    ]
    store.write(rows[-1:])  # in the newest, open bucket
    assert store.read_traffic(since, until, 60, "/predict/text").requests == 600


@pytest.mark.parametrize("width", [7.0, 60.0])
def test_buckets_sit_at_whole_multiples_of_their_width(store: TelemetryStore, width: float) -> None:
    store.write(_traffic())
    traffic = store.read_traffic(1003.0, 1003.0 + 10 * width, 10, "/predict/text")
    assert all(b.start / width == pytest.approx(round(b.start / width)) for b in traffic.buckets)
    assert traffic.requests == sum(1 for p in _traffic() if 1003.0 <= p.time < 1003.0 + 10 * width)
