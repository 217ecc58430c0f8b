"""The bounded, non-blocking queue between the requests and the sinks, and its writer thread.

A request only appends its record to a bounded in-memory queue (``submit``: no I/O, no lock
held across I/O, no thread woken). One writer thread drains the queue every
``flush_interval_s`` in batches of up to ``batch_size`` and hands each batch to every
:class:`Sink`. A sink that fails keeps its records in its own retry buffer and is tried again
with backoff (0.5 s doubling to 30 s), so a store that is down loses nothing and holds back no
other sink; only a full queue or a full retry buffer drops records, and every drop is counted
(``/metrics``). On shutdown (the server's SIGTERM ends in :meth:`Telemetry.close`) the writer
drains the queue and flushes every sink; what a sink still refuses is spilled to
``<spill_dir>/<sink>.jsonl`` and sent first on the next start. The spill file is kept until
the sink has taken every record it holds (a crash while it is being re-sent loses nothing:
the next start sends it again, and the stores' keyed inserts store each record once); a line
that cannot be read (a file cut short) is skipped, logged and counted, never fatal; a spill
that cannot be written (a full disk) is logged and counted, never an error out of shutdown.

A write that fails for a reason in the data (:func:`is_data_error`: a text the store cannot
encode, an integer it cannot hold), not in the connection, is not retried as it is: the
batch is split in halves until the records the sink refuses are alone, each of those is
quarantined (``<spill_dir>/<sink>.quarantine.jsonl``, one JSON line with the error) and
counted, and the rest are delivered. One bad record never holds back the others.

Its own module, apart from the stores, because it knows nothing of SQL: the stores
(``mltrail.telemetry.stores``) and the write-only sinks (``mltrail.telemetry.sinks``) are all
just :class:`Sink` to it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mltrail.telemetry.record import Record
from mltrail.telemetry.spill import SpillFile

if TYPE_CHECKING:
    from mltrail.telemetry.settings import TelemetrySettings

log = logging.getLogger("mltrail.telemetry")


class RecordsRejected(Exception):
    """Raised by a sink whose write failed because of what the records hold (not because
    the sink is unreachable): retrying the same batch would fail the same way."""


def is_data_error(exc: BaseException) -> bool:
    """Whether a failed write is the data's fault: a store's :class:`RecordsRejected`, or an
    encoding/conversion error (orjson's ``JSONEncodeError`` is a ``TypeError``; a lone
    surrogate a ``UnicodeEncodeError``; an integer past 64 bits an ``OverflowError``). A
    connection, lock or disk error is none of these: that batch is retried whole."""
    return isinstance(exc, RecordsRejected | TypeError | ValueError | OverflowError)


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
    quarantined: dict[str, int] = field(default_factory=dict)
    """Records a sink refused for their data (written to its quarantine file)."""
    spill_bad_lines: int = 0
    """Spill-file lines that could not be read back (skipped, logged)."""
    spill_failed: dict[str, int] = field(default_factory=dict)
    """Records that could not be written to a spill file at shutdown (lost, logged)."""


class _SinkState:
    def __init__(self, sink: Sink, capacity: int) -> None:
        self.sink = sink
        self.buffer: deque[Record] = deque()
        self.capacity = capacity
        self.next_try = 0.0
        self.backoff = 0.5
        self.from_spill = 0  # the buffer's first records that came from the spill file
        self.settled = 0  # records of the chunk being written that were delivered/quarantined


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
            self.counters.quarantined[state.sink.name] = 0
            self.counters.spill_failed[state.sink.name] = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._spill = Path(settings.spill_dir)
        self._files = {s.sink.name: SpillFile(self._spill, s.sink.name) for s in self._states}

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
            records, bad = self._files[state.sink.name].read()
            self.counters.spill_bad_lines += bad
            state.buffer.extend(records)
            state.from_spill = len(records)
            if not records:
                self._files[state.sink.name].remove()  # nothing left in it worth keeping
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
            state.buffer.extend(batch)
            overflow = len(state.buffer) - state.capacity
            if overflow > 0:  # only a full buffer drops, oldest first
                self._settle(state, overflow)
                self.counters.dropped_retry_full[state.sink.name] += overflow
            if state.buffer and (force or time.monotonic() >= state.next_try):
                self._flush(state)
        for state in self._states:
            self.counters.pending[state.sink.name] = len(state.buffer)

    def _flush(self, state: _SinkState) -> None:
        name = state.sink.name
        while state.buffer:
            chunk = list(_first(state.buffer, self.settings.batch_size))
            state.settled = 0
            try:
                self._write_or_split(state, chunk)
            except Exception as exc:  # a sink's failure must not stop the others
                self._settle(state, state.settled)
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
                return
            self._settle(state, len(chunk))
            state.backoff = 0.5

    def _write_or_split(self, state: _SinkState, records: list[Record]) -> None:
        """Write ``records``; when the sink refuses them for their data, write each half
        alone, down to single records, which are quarantined. A failure of any other kind
        is raised (the records from the first not settled on are kept for retry)."""
        try:
            state.sink.write(records)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(records) == 1:
                self._quarantine(state, records[0], exc)
                state.settled += 1
                return
            middle = len(records) // 2
            self._write_or_split(state, records[:middle])
            self._write_or_split(state, records[middle:])
            return
        self.counters.exported[state.sink.name] += len(records)
        state.settled += len(records)

    def _quarantine(self, state: _SinkState, record: Record, exc: Exception) -> None:
        name = state.sink.name
        self.counters.quarantined[name] += 1
        log.error(
            "telemetry sink %s refused a %s record (%s: %s); quarantined in %s",
            name,
            record.kind,
            type(exc).__name__,
            exc,
            self._files[name].quarantine,
        )
        self._files[name].quarantine_record(record, exc)

    def _settle(self, state: _SinkState, n: int) -> None:
        """The buffer's first ``n`` records are done with (delivered, quarantined or
        dropped); once every record of the spill file is, the file goes."""
        for _ in range(n):
            state.buffer.popleft()
        if state.from_spill:
            state.from_spill = max(state.from_spill - n, 0)
            if not state.from_spill:
                self._files[state.sink.name].remove()

    def close(self, timeout_s: float | None = None) -> None:
        """Drain the queue, flush every sink (retrying until ``timeout_s``, by default the
        settings' ``shutdown_timeout_s``), spill the rest."""
        if timeout_s is None:
            timeout_s = self.settings.shutdown_timeout_s
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
        spilled: dict[str, int] = {}
        for state in self._states:
            if state.buffer:
                spilled[state.sink.name] = self._spill_at_shutdown(state)
            with contextlib.suppress(Exception):
                state.sink.close()
        c = self.counters
        log.info(
            "telemetry closed: exported %s, spilled %s, spill failed %s, quarantined %s, "
            "dropped %d (queue full) %s (retry buffer full), bad spill lines %d",
            c.exported,
            spilled,
            c.spill_failed,
            c.quarantined,
            c.dropped_queue_full,
            c.dropped_retry_full,
            c.spill_bad_lines,
        )

    def _spill_at_shutdown(self, state: _SinkState) -> int:
        """Write the sink's spill file; the number of records it now holds."""
        name, n = state.sink.name, len(state.buffer)
        try:
            # The whole buffer replaces the file: it still holds the file's undelivered records.
            self._files[name].write(state.buffer)
        except Exception as exc:  # a full disk: counted and logged, never out of shutdown
            lost = n - state.from_spill  # the old file, still in place, holds the rest
            self.counters.spill_failed[name] += lost
            log.error(
                "telemetry sink %s still down at shutdown and its spill file %s cannot be "
                "written (%s: %s): %d records lost",
                name,
                self._files[name].path,
                type(exc).__name__,
                exc,
                lost,
            )
            return state.from_spill
        log.warning(
            "telemetry sink %s still down at shutdown: %d records spilled to %s",
            name,
            n,
            self._files[name].path,
        )
        return n

    @property
    def depth(self) -> int:
        return len(self.queue)


def _first(items: deque[Record], n: int) -> Iterator[Record]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item
