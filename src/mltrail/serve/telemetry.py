"""Telemetry: one record per prediction (and per feedback), never in the request's way.

A request only appends its record to a bounded in-memory queue (``put_nowait``: no I/O, no
lock held across I/O). One writer thread drains the queue in batches and hands each batch to
every sink. A sink that fails keeps its records in its own retry buffer and is tried again
with backoff, so a store that is down loses nothing; only a full queue or a full retry buffer
drops records, and every drop is counted (``/metrics``). On shutdown the writer drains the
queue and flushes every sink; what a sink still refuses is spilled to a JSONL file and sent
first on the next start.

Sinks: ``sqlite`` (the local store ``mltrail monitor`` reads; idempotent inserts keyed by the
prediction id, so a retried batch never doubles a record), ``wandb`` (one ``wandb.log`` per
record in an offline run, the paper's way), ``mlflow`` (metrics of a serving run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from mltrail.errors import ParamsError
from mltrail.serve.settings import TelemetrySettings

log = logging.getLogger("mltrail.telemetry")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is several times slower
class Prediction:
    prediction_id: str
    time: float
    endpoint: str
    model_version: str
    label: int
    class_name: str
    confidence: float
    inference_ms: float
    profile: dict[str, float] = field(default_factory=dict)
    kind: str = "prediction"


@dataclass(slots=True)
class Feedback:
    prediction_id: str
    time: float
    label: int
    kind: str = "feedback"


@dataclass(slots=True)
class Capture:
    """A prediction's input, kept (``capture_inputs``) so that labelled production data can
    be added to the training set: a text, or an image as base64 of its 3 x 32 x 32 bytes."""

    prediction_id: str
    time: float
    input: str
    kind: str = "capture"


Record = Prediction | Feedback | Capture


def record_from_dict(values: dict[str, Any]) -> Record:
    values = dict(values)
    kind = values.pop("kind", "prediction")
    if kind == "feedback":
        return Feedback(**values)
    if kind == "capture":
        return Capture(**values)
    return Prediction(**values)


class Sink(Protocol):
    name: str

    def write(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


class SqliteSink:
    """The local telemetry store: two tables, WAL mode, one transaction per batch."""

    name = "sqlite"
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS predictions (
        prediction_id TEXT PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
        model_version TEXT NOT NULL, label INTEGER NOT NULL, class_name TEXT NOT NULL,
        confidence REAL NOT NULL, inference_ms REAL NOT NULL, profile TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
    CREATE TABLE IF NOT EXISTS feedback (
        prediction_id TEXT NOT NULL, time REAL NOT NULL, label INTEGER NOT NULL,
        PRIMARY KEY (prediction_id, time));
    CREATE TABLE IF NOT EXISTS inputs (
        prediction_id TEXT PRIMARY KEY, time REAL NOT NULL, input TEXT NOT NULL);
    """
    INSERT_PREDICTIONS = """
    INSERT OR IGNORE INTO predictions
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6,
           value->>7, value->>8
    FROM json_each(?)"""
    INSERT_FEEDBACK = """
    INSERT OR IGNORE INTO feedback SELECT value->>0, value->>1, value->>2 FROM json_each(?)"""
    INSERT_INPUTS = """
    INSERT OR IGNORE INTO inputs SELECT value->>0, value->>1, value->>2 FROM json_each(?)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a crash of this process; only a power loss can
            # take the last batches (FULL would fsync every batch on the writer's clock).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self.SCHEMA)
            self._conn = conn
        return self._conn

    def write(self, records: Sequence[Record]) -> None:
        """One transaction per batch; the rows go in as one JSON document that SQLite unpacks
        itself (``json_each``): one call into SQLite per batch instead of one per row, so this
        thread holds the interpreter lock for a few microseconds per record, not the request
        thread's time."""
        conn = self._connect()
        predictions = orjson.dumps([
            (r.prediction_id, r.time, r.endpoint, r.model_version, r.label, r.class_name,
             r.confidence, r.inference_ms, r.profile)
            for r in records if isinstance(r, Prediction)
        ])  # fmt: skip
        feedback = orjson.dumps(
            [(r.prediction_id, r.time, r.label) for r in records if isinstance(r, Feedback)]
        )
        captures = [(r.prediction_id, r.time, r.input) for r in records if isinstance(r, Capture)]
        with conn:  # one transaction: all of the batch or none of it
            conn.execute(self.INSERT_PREDICTIONS, (predictions,))
            conn.execute(self.INSERT_FEEDBACK, (feedback,))
            if captures:
                conn.execute(self.INSERT_INPUTS, (orjson.dumps(captures),))

    def has_prediction(self, prediction_id: str) -> bool:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            row = conn.execute(
                "SELECT 1 FROM predictions WHERE prediction_id = ?", (prediction_id,)
            ).fetchone()
        except sqlite3.OperationalError:  # no table yet: nothing stored
            return False
        finally:
            conn.close()
        return row is not None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresSink:
    """The telemetry store on PostgreSQL (shared by server replicas): the same two tables,
    the schema created on first use and versioned, one statement per batch
    (``jsonb_populate_recordset``), inserts keyed by the prediction id like SQLite's."""

    name = "postgres"
    # Versioned migrations, applied in order, each once, under an advisory lock (several
    # replicas may start together). A new column or index is a new entry; never edit one.
    MIGRATIONS: tuple[tuple[int, str], ...] = (
        (
            1,
            """
        CREATE TABLE predictions (
            prediction_id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL,
            endpoint TEXT NOT NULL, model_version TEXT NOT NULL, label INTEGER NOT NULL,
            class_name TEXT NOT NULL, confidence DOUBLE PRECISION NOT NULL,
            inference_ms DOUBLE PRECISION NOT NULL, profile JSONB NOT NULL);
        CREATE INDEX predictions_time ON predictions (time);
        CREATE TABLE feedback (
            prediction_id TEXT NOT NULL, time DOUBLE PRECISION NOT NULL, label INTEGER NOT NULL,
            PRIMARY KEY (prediction_id, time));
        """,
        ),
        (
            2,
            """
        CREATE TABLE inputs (
            prediction_id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL, input TEXT NOT NULL);
        """,
        ),
    )
    VERSION = MIGRATIONS[-1][0]

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.dsn, connect_timeout=5)
            with conn.transaction():
                # One replica migrates; the others wait for its lock, then find it done.
                conn.execute("SELECT pg_advisory_xact_lock(7270011)")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS mltrail_telemetry_schema "
                    "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())"
                )
                found = conn.execute("SELECT max(version) FROM mltrail_telemetry_schema")
                current = (found.fetchone() or (None,))[0] or 0
                if current > self.VERSION:
                    raise RuntimeError(
                        f"the telemetry store's schema is version {current}, newer than this "
                        f"mltrail's ({self.VERSION}): upgrade mltrail"
                    )
                for version, sql in self.MIGRATIONS:
                    if version > current:
                        conn.execute(sql)
                        conn.execute(
                            "INSERT INTO mltrail_telemetry_schema (version) VALUES (%s)",
                            (version,),
                        )
            self._conn = conn
        return self._conn

    def write(self, records: Sequence[Record]) -> None:
        conn = self._connect()
        predictions = orjson.dumps([r for r in records if isinstance(r, Prediction)])
        feedback = orjson.dumps([r for r in records if isinstance(r, Feedback)])
        captures = [r for r in records if isinstance(r, Capture)]
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO predictions SELECT * FROM "
                    "jsonb_populate_recordset(NULL::predictions, %s::jsonb) "
                    "ON CONFLICT (prediction_id) DO NOTHING",
                    (predictions.decode(),),
                )
                conn.execute(
                    "INSERT INTO feedback SELECT * FROM "
                    "jsonb_populate_recordset(NULL::feedback, %s::jsonb) ON CONFLICT DO NOTHING",
                    (feedback.decode(),),
                )
                if captures:
                    conn.execute(
                        "INSERT INTO inputs SELECT prediction_id, time, input FROM "
                        "jsonb_populate_recordset(NULL::inputs, %s::jsonb) "
                        "ON CONFLICT DO NOTHING",
                        (orjson.dumps(captures).decode(),),
                    )
        except Exception:
            self.close()  # reconnect on the next try: the server may have restarted
            raise

    def has_prediction(self, prediction_id: str) -> bool:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            try:
                row = conn.execute(
                    "SELECT 1 FROM predictions WHERE prediction_id = %s", (prediction_id,)
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                return False
        return row is not None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class WandbSink:
    """The paper's serving telemetry: each prediction logged to a W&B run (offline here)."""

    name = "wandb"

    def __init__(self, settings: TelemetrySettings) -> None:
        from mltrail.tracking.wandb_backend import keep_files_in

        root = Path(settings.wandb_dir).resolve()
        keep_files_in(root)
        import wandb

        self._run = wandb.init(
            project=settings.wandb_project,
            mode=settings.wandb_mode,
            dir=str(root),
            job_type="serving",
            settings=wandb.Settings(console="off"),
            reinit="create_new",
        )

    def write(self, records: Sequence[Record]) -> None:
        for r in records:
            if isinstance(r, Prediction):
                self._run.log({
                    "endpoint": r.endpoint, "prediction": r.label, "class_name": r.class_name,
                    "confidence": r.confidence, "inference_ms": r.inference_ms,
                    "model_version": r.model_version,
                    **{f"input/{k}": v for k, v in r.profile.items()},
                })  # fmt: skip
            elif isinstance(r, Feedback):
                self._run.log({"feedback_label": r.label})

    def close(self) -> None:
        self._run.finish()


class MlflowSink:
    """A serving run in MLflow: confidence and inference time per prediction, as metrics."""

    name = "mlflow"

    def __init__(self, settings: TelemetrySettings) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(settings.mlflow_uri)
        found = self._client.get_experiment_by_name(settings.mlflow_experiment)
        experiment = (
            found.experiment_id
            if found
            else self._client.create_experiment(settings.mlflow_experiment)
        )
        self._run_id = self._client.create_run(experiment, run_name="serving").info.run_id
        self._step = 0

    def write(self, records: Sequence[Record]) -> None:
        from mlflow.entities import Metric

        metrics = []
        for r in records:
            if isinstance(r, Prediction):
                ms = int(r.time * 1000)
                metrics += [
                    Metric("confidence", r.confidence, ms, self._step),
                    Metric("inference_ms", r.inference_ms, ms, self._step),
                    Metric("prediction", float(r.label), ms, self._step),
                ]
                self._step += 1
        for i in range(0, len(metrics), 999):  # MLflow takes at most 1000 per batch
            self._client.log_batch(self._run_id, metrics=metrics[i : i + 999])

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


def build_sinks(settings: TelemetrySettings) -> list[Sink]:
    sinks: list[Sink] = []
    for name in settings.sinks:
        if name == "sqlite":
            sinks.append(SqliteSink(Path(settings.sqlite_path)))
        elif name == "postgres":
            if not settings.postgres_dsn:
                raise ParamsError(
                    "telemetry sink postgres needs telemetry.postgres_dsn",
                    hint="e.g. postgresql://user@127.0.0.1:5432/mltrail",
                )
            sinks.append(PostgresSink(settings.postgres_dsn))
        elif name == "wandb":
            sinks.append(WandbSink(settings))
        else:
            sinks.append(MlflowSink(settings))
    return sinks


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
                        name, type(exc).__name__, exc, len(state.buffer),
                    )  # fmt: skip
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
                    state.sink.name, len(state.buffer), self._spill,
                )  # fmt: skip
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
