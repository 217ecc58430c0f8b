"""The figures every store computes in SQL (the status page, the temporal audit), over both
stores, checked against the same figures computed in Python from the rows written."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from mltrail.telemetry import Prediction, TelemetryStore, open_store
from mltrail.telemetry.aggregate import LATENCY_BIN_RATIO, percentiles_from_bins

RESOLUTION = LATENCY_BIN_RATIO**0.5 - 1  # SQLite's percentiles: the bin's geometric middle


def _traffic(seed: int = 3) -> list[Prediction]:
    """600 predictions over 600 s: version a (fast, lognormal around 4 ms) for the first
    300 s, then b (around 8 ms); 3 classes in a 3:2:1 mix; confidences uniform."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(600):
        version, scale = ("m@a", 4.0) if i < 300 else ("m@b", 8.0)
        rows.append(
            Prediction(
                f"p{i}",
                1000.0 + i,
                "/predict/text",
                version,
                i % 6 // 3 if i % 6 else 2,
                ["neg", "neg", "neg", "pos", "pos", "mid"][i % 6],
                float(rng.uniform(0.0, 1.0)),
                float(scale * rng.lognormal(0.0, 0.3)),
                {},
            )
        )
    return rows


def test_traffic_is_bucketed_and_counted_in_sql(store: TelemetryStore) -> None:
    rows = _traffic()
    store.write(rows)
    traffic = store.read_traffic(1000.0, 1600.0, buckets=6, endpoint="/predict/text")
    assert [b.requests for b in traffic.buckets] == [100] * 6
    assert [b.start for b in traffic.buckets] == [1000.0 + 100 * i for i in range(6)]
    assert traffic.class_mix == {"neg": 300, "pos": 200, "mid": 100}
    assert sum(traffic.confidence_bins) == 600 and len(traffic.confidence_bins) == 20
    expected_bins = np.histogram([r.confidence for r in rows], bins=20, range=(0, 1))[0]
    assert traffic.confidence_bins == expected_bins.tolist()
    for i, bucket in enumerate(traffic.buckets):
        chunk = rows[i * 100 : (i + 1) * 100]
        assert bucket.mean_confidence == pytest.approx(np.mean([r.confidence for r in chunk]))
        ms = [r.inference_ms for r in chunk]
        # Every store: the bin that holds the rank's value, within the bins' resolution.
        for q, value in ((50, bucket.latency.p50_ms), (95, bucket.latency.p95_ms)):
            rank = sorted(ms)[int(np.ceil(q / 100 * len(ms))) - 1]
            assert value is not None
            assert abs(value - rank) <= RESOLUTION * rank * 1.0001
    # The versions in the period, as read_version_latency reads them over all time.
    everything = store.read_version_latency("/predict/text")
    # The period's per-version percentiles come from latency bins in every store (they add
    # up across time buckets); PostgreSQL's over all time are exact: within the resolution.
    assert [(v.model_version, v.first, v.last, v.latency.n) for v in traffic.versions] == [
        (v.model_version, v.first, v.last, v.latency.n) for v in everything
    ]
    for got, want in zip(traffic.versions, everything, strict=True):
        for value, exact in (
            (got.latency.p50_ms, want.latency.p50_ms),
            (got.latency.p95_ms, want.latency.p95_ms),
        ):
            assert value is not None and exact is not None
            assert abs(value - exact) <= 2 * RESOLUTION * exact
    assert [v.mean_ms for v in traffic.versions] == pytest.approx([v.mean_ms for v in everything])
    # Another endpoint, or a range without rows: nothing.
    assert store.read_traffic(1000.0, 1600.0, 6, endpoint="/predict/image").requests == 0
    assert store.read_traffic(0.0, 10.0, 6).buckets == []


def test_latency_history_per_model_version(store: TelemetryStore) -> None:
    rows = _traffic()
    store.write(rows)
    versions = store.read_version_latency("/predict/text")
    assert [v.model_version for v in versions] == ["m@a", "m@b"]  # in the order first served
    a, b = versions
    assert (a.first, a.last, b.first, b.last) == (1000.0, 1299.0, 1300.0, 1599.0)
    assert a.latency.n == b.latency.n == 300
    for version, chunk in ((a, rows[:300]), (b, rows[300:])):
        ms = sorted(r.inference_ms for r in chunk)
        assert version.mean_ms == pytest.approx(np.mean(ms))
        assert version.latency.p50_ms is not None
        assert abs(version.latency.p50_ms - float(np.median(ms))) <= 0.05 * float(np.median(ms))
    assert b.latency.p50_ms is not None and a.latency.p50_ms is not None
    assert 1.7 < b.latency.p50_ms / a.latency.p50_ms < 2.3  # b is about twice as slow
    newest = store.read_latencies("m@b", "/predict/text", limit=10)
    assert newest == [r.inference_ms for r in reversed(rows[-10:])]
    assert store.read_latencies("m@none") == []


def test_an_empty_store_has_no_figures(tmp_path: Path) -> None:
    with closing(open_store(str(tmp_path / "new.db"))) as store:
        store.migrate()
        assert store.read_traffic(0.0, 1.0, 4).requests == 0
        assert store.read_version_latency() == []


def test_percentiles_from_bins_read_the_bin_that_holds_the_rank() -> None:
    assert percentiles_from_bins([]).p50_ms is None
    latency = percentiles_from_bins([(10, 50), (20, 45), (30, 5)])
    assert latency.n == 100
    assert latency.p50_ms == pytest.approx(0.001 * LATENCY_BIN_RATIO**10.5)
    assert latency.p95_ms == pytest.approx(0.001 * LATENCY_BIN_RATIO**20.5)
    assert latency.p99_ms == pytest.approx(0.001 * LATENCY_BIN_RATIO**30.5)
