"""The status page's time buckets, kept once they are closed, so that a page view scans only
the newest rows of its period instead of all of them (a day at 1M predictions took about 3 s
to aggregate on every view; see benchmarks/results/status_page.md).

Buckets sit at whole multiples of their width (``floor(time / width)``), so the same bucket
is the same rows from one view to the next. A bucket is kept once it ended :data:`SETTLE_S`
ago (the telemetry queue writes within a second or two) and for :data:`TTL_S` at most: rows that
arrive later still (a spill file replayed after the database was down, another replica's
backlog) show on the page within that time. The first and last, partial, buckets of a period
are always read.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from mltrail.telemetry.aggregate import BucketCounts

SETTLE_S = 60.0
"""A bucket is kept only once it ended this long ago."""
TTL_S = 600.0
"""... and for this long: late rows reach the page within it."""
MAX_ENTRIES = 50_000
"""A bound on memory: past it, the oldest entries are dropped."""

Fetch = Callable[[float, float], dict[int, BucketCounts]]
"""Counts per bucket index of the rows in [since, until)."""


class BucketCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str | None, float, int], tuple[float, BucketCounts]] = {}
        self._lock = threading.Lock()

    def read(
        self,
        fetch: Fetch,
        since: float,
        until: float,
        width: float,
        key: str | None,
        now: float | None = None,
    ) -> dict[int, BucketCounts]:
        """Counts per bucket of [since, until): kept buckets from memory, the rest through
        ``fetch`` (at most two reads: the partial first bucket, then from the first bucket
        not kept to ``until``)."""
        now = time.time() if now is None else now
        first_full = math.ceil(since / width)
        end_full = max(math.floor(until / width), first_full)
        closed_end = min(end_full, max(math.floor((now - SETTLE_S) / width), first_full))
        keepable = range(first_full, closed_end)
        with self._lock:
            kept = {
                i: entry[1]
                for i in keepable
                if (entry := self._entries.get((key, width, i))) and now - entry[0] < TTL_S
            }
        missing = [i for i in keepable if i not in kept]
        start = missing[0] if missing else closed_end
        counts: dict[int, BucketCounts] = {}
        head_end = min(first_full * width, until)
        if since < head_end:
            counts.update(fetch(since, head_end))
        if start * width < until:
            fetched = fetch(max(start * width, since), until)
            counts.update(fetched)
            with self._lock:
                if len(self._entries) > MAX_ENTRIES:
                    self._drop_oldest()
                for i in range(start, closed_end):
                    self._entries[(key, width, i)] = (now, fetched.get(i, BucketCounts()))
        counts.update((i, bucket) for i, bucket in kept.items() if i < start)
        return counts

    def _drop_oldest(self) -> None:
        ordered = sorted(self._entries.items(), key=lambda item: item[1][0])
        for k, _ in ordered[: len(ordered) // 2]:
            del self._entries[k]
