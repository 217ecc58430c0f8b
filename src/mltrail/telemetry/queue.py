"""The bounded, non-blocking queue between the requests and the sinks, and its writer thread.

A request only appends its record to a bounded in-memory queue (``submit``: no I/O, no lock
held across I/O, no thread woken). One writer thread drains the queue every
``flush_interval_s`` in batches of up to ``batch_size`` and hands each batch to every
:class:`Sink`. A sink that fails keeps its records in its own retry buffer and is tried again
with backoff (0.5 s doubling to 30 s), so a store that is down loses nothing and holds back no
other sink; only a full queue or a full retry buffer drops records, and every drop is counted
(``/metrics``). On shutdown (the server's SIGTERM ends in :meth:`Telemetry.close`) the writer
drains the queue and flushes every sink; what a sink still refuses is spilled to
``<spill_dir>/<sink>.jsonl`` and sent first on the next start.

Its own module, apart from the stores, because it knows nothing of SQL: the stores
(``mltrail.telemetry.stores``) and the write-only sinks (``mltrail.telemetry.sinks``) are all
just :class:`Sink` to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mltrail.telemetry.record import Record, record_from_dict

if TYPE_CHECKING:
    from mltrail.telemetry.settings import TelemetrySettings

log = logging.getLogger("mltrail.telemetry")


class Sink(Protocol):
    """Where the writer delivers batches. ``write`` takes all of a batch or raises (the
    writer keeps the batch and retries it: a write must be idempotent); ``name`` labels the
    sink's counters and its spill file."""

    name: str

    def write(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


@dataclass
class Counters:
    """What /metrics shows about telemetry (read by the Prometheus collector)."""

    dropped_queue_full: int = 0
    exported: dict[str, int] = field(default_factory=dict)
    dropped_retry_full: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)


class _SinkState:
    def __init__(self, sink: Sink, capacity: int) -> None:
        self.sink = sink
        self.buffer: deque[Record] = deque()
        self.capacity = capacity
        self.next_try = 0.0
        self.backoff = 0.5


class Telemetry:
    """The bounded queue and its writer thread."""

    def __init__(self, settings: TelemetrySettings, sinks: Sequence[Sink]) -> None:
        self.settings = settings
        # A deque, not a queue.Queue: appending is one atomic operation with no lock and no
        # wake-up of the writer (which polls every flush_interval_s instead); at thousands of
        # requests a second, waking a thread per record cost more than the record.
        self.queue: deque[Record] = deque()
        self._capacity = settings.queue_size
        self.counters = Counters()
        self._states = [_SinkState(s, settings.retry_buffer) for s in sinks]
        for state in self._states:
            self.counters.exported[state.sink.name] = 0
            self.counters.dropped_retry_full[state.sink.name] = 0
            self.counters.failures[state.sink.name] = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._spill = Path(settings.spill_dir)

    # -- the request side: never blocks --------------------------------------------------------

    def submit(self, record: Record) -> bool:
        if not self._states:
            return True
        if len(self.queue) >= self._capacity:
            with self._count_lock:
                self.counters.dropped_queue_full += 1
            return False
        self.queue.append(record)
        return True

    # -- the writer ----------------------------------------------------------------------------

    def start(self) -> None:
        for state in self._states:
            state.buffer.extend(self._read_spill(state.sink.name))
        self._thread.start()

    def _take_batch(self) -> list[Record]:
        batch: list[Record] = []
        with contextlib.suppress(IndexError):
            while len(batch) < self.settings.batch_size:
                batch.append(self.queue.popleft())
        return batch

    def _run(self) -> None:
        while not self._stop.wait(self.settings.flush_interval_s):
            while True:
                batch = self._take_batch()
                self._deliver(batch)
                if len(batch) < self.settings.batch_size:
                    break

    def _deliver(self, batch: list[Record], force: bool = False) -> None:
        for state in self._states:
            name = state.sink.name
            state.buffer.extend(batch)
            overflow = len(state.buffer) - state.capacity
            for _ in range(max(overflow, 0)):  # only a full buffer drops, oldest first
                state.buffer.popleft()
                self.counters.dropped_retry_full[name] += 1
            if not state.buffer or (not force and time.monotonic() < state.next_try):
                continue
            while state.buffer:
                chunk = list(_first(state.buffer, self.settings.batch_size))
                try:
                    state.sink.write(chunk)
                except Exception as exc:  # a sink's failure must not stop the others
                    self.counters.failures[name] += 1
                    state.next_try = time.monotonic() + state.backoff
                    state.backoff = min(state.backoff * 2, 30.0)
                    log.warning(
                        "telemetry sink %s failed (%s: %s); %d records kept for retry",
                        name,
                        type(exc).__name__,
                        exc,
                        len(state.buffer),
                    )
                    break
                for _ in chunk:
                    state.buffer.popleft()
                self.counters.exported[name] += len(chunk)
                state.backoff = 0.5
        for state in self._states:
            self.counters.pending[state.sink.name] = len(state.buffer)

    def close(self, timeout_s: float = 30.0) -> None:
        """Drain the queue, flush every sink (retrying until ``timeout_s``), spill the rest."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self._take_batch()
            while self.queue:
                batch += self._take_batch()
            self._deliver(batch, force=True)
            if not any(s.buffer for s in self._states) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for state in self._states:
            if state.buffer:
                self._write_spill(state.sink.name, state.buffer)
                log.warning(
                    "telemetry sink %s still down at shutdown: %d records spilled to %s",
                    state.sink.name,
                    len(state.buffer),
                    self._spill,
                )
            with contextlib.suppress(Exception):
                state.sink.close()

    # -- spill files: what a sink had not taken at shutdown ------------------------------------

    def _spill_path(self, sink: str) -> Path:
        return self._spill / f"{sink}.jsonl"

    def _write_spill(self, sink: str, records: Iterable[Record]) -> None:
        self._spill.mkdir(parents=True, exist_ok=True)
        with self._spill_path(sink).open("a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(asdict(record)) + "\n")
            f.flush()

    def _read_spill(self, sink: str) -> list[Record]:
        path = self._spill_path(sink)
        if not path.is_file():
            return []
        records = [record_from_dict(json.loads(line)) for line in path.read_text().splitlines()]
        path.unlink()  # now in the sink's retry buffer; spilled again if still undelivered
        log.info("telemetry sink %s: %d spilled records to send", sink, len(records))
        return records

    @property
    def depth(self) -> int:
        return len(self.queue)


def _first(items: deque[Record], n: int) -> Iterator[Record]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item
