"""What every telemetry store is (:class:`TelemetryStore`), and the SQL they share.

A store is a :class:`~mltrail.telemetry.queue.Sink` the writer delivers to, which can also be
read: a window of predictions with their feedback (``mltrail monitor``), the labelled
captured inputs (``mltrail retrain``), and whether a prediction id exists (``/feedback`` for a
prediction older than the server's memory). Each store migrates its own versioned schema.

The SQL stores share everything but the connection: :class:`SQLStore` holds the queries (built
from the record's columns, with the store's parameter mark) and the migration procedure; a
store brings its connection, its lock for migrating, its migrations and its ``write``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from mltrail.errors import MltrailError
from mltrail.telemetry.aggregate import (
    CONFIDENCE_BINS,
    LATENCY_BIN_FLOOR_MS,
    LATENCY_BIN_RATIO,
    BucketCounts,
    Latency,
    Traffic,
    VersionCounts,
    VersionLatency,
    percentiles_from_bins,
    traffic_from_buckets,
)
from mltrail.telemetry.bucket_cache import BucketCache
from mltrail.telemetry.record import (
    PREDICTION_COLUMNS,
    Filter,
    Labelled,
    Prediction,
    Record,
    Window,
)

SCHEMA_TABLE = "mltrail_telemetry_schema"
"""One row per applied migration (version, when). The same name in every store; PostgreSQL
stores have had it since their first version, so existing shared databases carry on."""
WINDOW_LIMIT = 100_000
ADDED_COLUMNS = {"group_name": 3}
"""Prediction columns a later migration added -> its version: a store not migrated yet (an
older server still writes it) is read with NULL in their place."""
FIND_PREDICTION = "SELECT endpoint, model_version FROM predictions WHERE prediction_id = {m}"


@dataclass(frozen=True)
class PredictionRef:
    """A stored prediction's endpoint and the version of the model that made it."""

    endpoint: str
    model_version: str


Statement = tuple[str, Sequence[Any]]
"""SQL and its parameters."""


@runtime_checkable
class TelemetryStore(Protocol):
    """A place that keeps telemetry records and reads them back."""

    name: str
    """The sink's name (``sqlite``, ``postgres``): the label of its counters in /metrics."""

    def write(self, records: Sequence[Record]) -> None:
        """All of ``records`` in one transaction, or none; a record written twice (a retried
        batch) is stored once. Migrates the schema on first use."""

    def close(self) -> None: ...

    def migrate(self, to: int | None = None) -> int:
        """Apply the schema migrations newer than the store's (up to ``to``), each once, under
        a lock; returns the version now. Idempotent. Refuses a store newer than this code."""

    def version(self) -> int:
        """The schema version the store holds (0: none, or made before versions existed)."""

    def has_prediction(self, prediction_id: str) -> bool: ...

    def find_prediction(self, prediction_id: str) -> PredictionRef | None:
        """Which endpoint and model version made the prediction ``prediction_id`` (``None``
        when it is not stored): what ``/feedback`` checks a label against."""

    def read_window(self, where: Filter | None = None, limit: int = WINDOW_LIMIT) -> Window:
        """The newest ``limit`` predictions ``where`` matches (any when None), oldest first,
        with the latest feedback label of each."""

    def read_labelled(self, endpoint: str, after: float = 0.0) -> list[Labelled]:
        """Captured inputs of ``endpoint`` served after ``after`` that have feedback (the
        latest label each), oldest first; ``[]`` for a store without captured inputs."""

    def read_traffic(
        self, since: float, until: float, buckets: int, endpoint: str | None = None
    ) -> Traffic:
        """Requests, latency percentiles and mean confidence per time bucket (``buckets`` of
        equal width over [since, until)), class mix, confidence histogram and latency per
        model version over the period, in SQL."""

    def read_version_latency(self, endpoint: str | None = None) -> list[VersionLatency]:
        """Per model version (of ``endpoint``): predictions, first and last time, latency
        percentiles; oldest version first (by its first prediction)."""

    def read_latencies(
        self, model_version: str, endpoint: str | None = None, limit: int = WINDOW_LIMIT
    ) -> list[float]:
        """``inference_ms`` of the newest ``limit`` predictions of ``model_version``."""


@dataclass(frozen=True)
class Migration:
    """One step of a store's schema. Append a new one for a change; never edit one that has
    shipped (stores in the field have applied it)."""

    version: int
    statements: tuple[str, ...]


def pending(
    migrations: Sequence[Migration], current: int, to: int | None, location: str
) -> list[Migration]:
    """The migrations to apply to a store at version ``current`` to reach ``to`` (the latest
    when None)."""
    latest = migrations[-1].version
    if current > latest:
        raise MltrailError(
            f"the telemetry store {location} has schema version {current}, newer than this "
            f"mltrail's ({latest})",
            hint="upgrade mltrail",
        )
    return [m for m in migrations if current < m.version <= (latest if to is None else to)]


def _newest(where: Filter, columns: Sequence[str], mark: str, limit: int) -> Statement:
    """``SELECT columns`` of the newest ``limit`` predictions ``where`` matches (ties broken
    by id, so that two queries of one window agree)."""
    clauses, args = _where(where, mark)
    sql = f"SELECT {', '.join(columns)} FROM predictions{clauses}"
    return f"{sql} ORDER BY time DESC, prediction_id DESC LIMIT {mark}", [*args, limit]


# The newest label of each prediction that has a captured input.
_LABELLED = """
SELECT p.prediction_id, p.time, p.model_version, p.label, f.label, i.input, {group}
FROM predictions p
JOIN inputs i ON i.prediction_id = p.prediction_id
JOIN feedback f ON f.prediction_id = p.prediction_id
WHERE p.endpoint = {m} AND p.time > {m}
  AND f.time = (SELECT max(f2.time) FROM feedback f2 WHERE f2.prediction_id = p.prediction_id)
ORDER BY p.time"""


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class ThreadConnections(Generic[C]):
    """One kept connection per calling thread (the stores' lookups, asked from the request
    thread pool: opening one per request cost more than the query), all closed together."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[C] = []
        self._lock = threading.Lock()

    def get(self) -> C | None:
        conn: C | None = getattr(self._local, "conn", None)
        return conn

    def keep(self, conn: C) -> C:
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    def drop(self) -> None:
        """Forget this thread's connection (after an error: the next lookup opens another)."""
        self._local.conn = None

    def close_all(self) -> None:
        with self._lock:
            kept, self._all = self._all, []
        for conn in kept:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


class SQLStore(ABC):
    """The reads and the migration procedure of a SQL store; see the module's docstring."""

    name: str
    mark: ClassVar[str]
    """The driver's parameter placeholder (``?``, ``%s``)."""
    MIGRATIONS: ClassVar[tuple[Migration, ...]]
    SCHEMA_TABLE_DDL: ClassVar[str]

    def __init__(self) -> None:
        self._conn: Any = None  # the writer's connection (one thread: the telemetry writer)
        self._bucket_cache = BucketCache()

    # -- what a store brings -------------------------------------------------------------------

    @property
    @abstractmethod
    def location(self) -> str:
        """The store, for messages (never a password)."""

    @abstractmethod
    def _open(self) -> Any:
        """A new connection for writing or migrating."""

    @abstractmethod
    def _locked(self, conn: Any) -> contextlib.AbstractContextManager[None]:
        """A transaction on ``conn`` that one migrator at a time holds."""

    @abstractmethod
    def _query(
        self, statements: Sequence[Statement], missing_table_ok: bool = False
    ) -> list[list[tuple[Any, ...]]] | None:
        """The rows of each statement, read on a short connection of their own; ``None``
        when a table is missing and ``missing_table_ok``. Errors as ``MltrailError``."""

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None: ...

    @abstractmethod
    def has_prediction(self, prediction_id: str) -> bool: ...

    @abstractmethod
    def find_prediction(self, prediction_id: str) -> PredictionRef | None: ...

    # -- shared --------------------------------------------------------------------------------

    def _connection(self) -> Any:
        """The writer's connection, opened (and the schema migrated) on first use."""
        if self._conn is None:
            conn = self._open()
            try:
                self._migrate(conn, None)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def migrate(self, to: int | None = None) -> int:
        conn = self._open()
        try:
            return self._migrate(conn, to)
        finally:
            conn.close()

    def _migrate(self, conn: Any, to: int | None) -> int:
        with self._locked(conn):
            conn.execute(self.SCHEMA_TABLE_DDL)
            row = conn.execute(f"SELECT max(version) FROM {SCHEMA_TABLE}").fetchone()
            current = int((row[0] if row else None) or 0)
            steps = pending(self.MIGRATIONS, current, to, self.location)
            for step in steps:
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO {SCHEMA_TABLE} (version) VALUES ({self.mark})", (step.version,)
                )
        return steps[-1].version if steps else current

    def version(self) -> int:
        found = self._query(
            [(f"SELECT max(version) FROM {SCHEMA_TABLE}", ())], missing_table_ok=True
        )
        return int((found[0][0][0] if found and found[0] else None) or 0)

    def read_window(self, where: Filter | None = None, limit: int = WINDOW_LIMIT) -> Window:
        where = where or Filter()
        version = self.version()
        columns = [
            c if ADDED_COLUMNS.get(c, 0) <= version else f"NULL AS {c}" for c in PREDICTION_COLUMNS
        ]
        rows_sql, args = _newest(where, columns, self.mark, limit)
        ids_sql, _ = _newest(where, ("prediction_id",), self.mark, limit)
        feedback_sql = (
            f"SELECT f.prediction_id, f.label FROM feedback f JOIN ({ids_sql}) p "
            "ON p.prediction_id = f.prediction_id ORDER BY f.time"
        )
        found = self._query([(rows_sql, args), (feedback_sql, args)])
        assert found is not None
        return _window(*found)

    def read_labelled(self, endpoint: str, after: float = 0.0) -> list[Labelled]:
        group = "p.group_name" if self.version() >= ADDED_COLUMNS["group_name"] else "NULL"
        sql = _LABELLED.format(m=self.mark, group=group)
        found = self._query([(sql, (endpoint, after))], True)
        rows = found[0] if found else []
        return [Labelled(r[0], float(r[1]), r[2], int(r[3]), int(r[4]), r[5], r[6]) for r in rows]

    # -- aggregates (the status page, the temporal audit) -------------------------------------

    def _latency_statement(self, group: str, where: str, args: Sequence[Any]) -> Statement:
        """Rows from which :meth:`_latency_groups` reads the latency percentiles of each
        ``group``. Here: counts per (group, log-spaced latency bin), for a database without
        percentiles (SQLite); PostgreSQL overrides both with its exact ``percentile_cont``."""
        index = self._latency_bin()
        return (
            f"SELECT {group} AS g, {index} AS b, count(*) FROM predictions{where} GROUP BY 1, 2",
            args,
        )

    def _latency_groups(self, rows: list[tuple[Any, ...]]) -> dict[Any, Latency]:
        bins: dict[Any, list[tuple[int, int]]] = {}
        for group, index, count in rows:
            bins.setdefault(group, []).append((int(index), int(count)))
        return {group: percentiles_from_bins(counts) for group, counts in bins.items()}

    greatest: ClassVar[str] = "max"
    """SQL's two-argument maximum: SQLite's ``max``, PostgreSQL's ``GREATEST``."""

    def _latency_bin(self) -> str:
        floor = LATENCY_BIN_FLOOR_MS
        return (
            f"CAST(floor(ln({self.greatest}(inference_ms, {floor!r}) / {floor!r}) / "
            f"ln({LATENCY_BIN_RATIO!r})) AS INTEGER)"
        )

    def _bucket_counts(
        self, since: float, until: float, width: float, endpoint: str | None
    ) -> dict[int, BucketCounts]:
        """Counts per bucket (index ``floor(time / width)``) of the rows in [since, until), in
        two scans: classes and confidence bins, then model versions and latency bins (a few
        thousand rows for a million predictions)."""
        where, args = _where(Filter(since, until, endpoint), self.mark)
        bucket = f"CAST(floor(time / {float(width)!r}) AS BIGINT)"
        top = CONFIDENCE_BINS - 1
        confidence_bin = (
            f"CASE WHEN confidence >= 1 THEN {top} WHEN confidence <= 0 THEN 0 "
            f"ELSE CAST(floor(confidence * {CONFIDENCE_BINS}) AS INTEGER) END"
        )
        found = self._query(
            [
                (
                    f"SELECT {bucket}, class_name, {confidence_bin}, count(*) "
                    f"FROM predictions{where} GROUP BY 1, 2, 3",
                    args,
                ),
                (
                    f"SELECT {bucket}, model_version, {self._latency_bin()}, count(*), "
                    "sum(confidence), min(time), max(time), sum(inference_ms) "
                    f"FROM predictions{where} GROUP BY 1, 2, 3",
                    args,
                ),
            ],
            missing_table_ok=True,
        )
        counts: dict[int, BucketCounts] = {}
        if found is None:  # nothing written yet
            return counts
        mix, period = found
        for index, name, confidence, n in mix:
            b = counts.setdefault(int(index), BucketCounts())
            b.classes[str(name)] = b.classes.get(str(name), 0) + int(n)
            b.confidence_bins[int(confidence)] = b.confidence_bins.get(int(confidence), 0) + int(n)
        for index, version, latency, n, confidence_sum, first, last, ms in period:
            b = counts.setdefault(int(index), BucketCounts())
            b.requests += int(n)
            b.confidence_sum += float(confidence_sum)
            bins = {int(latency): int(n)}
            part = VersionCounts(int(n), float(first), float(last), float(ms), bins)
            if str(version) in b.versions:
                b.versions[str(version)].add(part)
            else:
                b.versions[str(version)] = part
        return counts

    def read_traffic(
        self, since: float, until: float, buckets: int, endpoint: str | None = None
    ) -> Traffic:
        """The period's figures in ``buckets`` time buckets. Buckets that closed a while ago
        are kept in memory (:mod:`mltrail.telemetry.bucket_cache`): a view reads only what
        is new since the last one."""
        width = max((until - since) / max(buckets, 1), 1e-3)

        def fetch(start: float, end: float) -> dict[int, BucketCounts]:
            return self._bucket_counts(start, end, width, endpoint)

        counts = self._bucket_cache.read(fetch, since, until, width, endpoint)
        return traffic_from_buckets(since, until, width, counts)

    def read_version_latency(self, endpoint: str | None = None) -> list[VersionLatency]:
        where, args = _where(Filter(endpoint=endpoint), self.mark)
        found = self._query(
            [
                (
                    "SELECT model_version, min(time), max(time), avg(inference_ms), count(*) "
                    f"FROM predictions{where} GROUP BY 1",
                    args,
                ),
                self._latency_statement("model_version", where, args),
            ],
            missing_table_ok=True,
        )
        if found is None:
            return []
        versions, latency_rows = found
        latency = self._latency_groups(latency_rows)
        rows = sorted(versions, key=lambda r: (float(r[1]), r[0]))
        return [
            VersionLatency(
                str(v),
                float(first),
                float(last),
                latency.get(v, Latency(int(n), None, None, None)),
                float(mean),
            )
            for v, first, last, mean, n in rows
        ]

    def read_latencies(
        self, model_version: str, endpoint: str | None = None, limit: int = WINDOW_LIMIT
    ) -> list[float]:
        where = Filter(endpoint=endpoint, model_version=model_version)
        sql, args = _newest(where, ("inference_ms",), self.mark, limit)
        found = self._query([(sql, args)], missing_table_ok=True)
        return [float(r[0]) for r in found[0]] if found else []

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _where(where: Filter, mark: str) -> tuple[str, list[Any]]:
    """`` WHERE ...`` (or ``""``) and its arguments for the predictions ``where`` matches."""
    clauses, args = [], []
    for clause, value in (
        ("time >= {m}", where.since),
        ("time < {m}", where.until),
        ("endpoint = {m}", where.endpoint),
        ("model_version = {m}", where.model_version),
    ):
        if value is not None:
            clauses.append(clause.format(m=mark))
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _window(rows: list[tuple[Any, ...]], feedback: list[tuple[Any, ...]]) -> Window:
    predictions = []
    for row in reversed(rows):  # queried newest first, returned oldest first
        prediction = Prediction(*row)
        if isinstance(prediction.profile, str):  # SQLite keeps JSON as text
            prediction.profile = json.loads(prediction.profile)
        predictions.append(prediction)
    ids = {p.prediction_id for p in predictions}
    labels: dict[str, int] = {}
    for prediction_id, label in feedback:  # ordered by time: the latest label wins
        if prediction_id in ids:  # (a prediction written between the two queries is not)
            labels[prediction_id] = int(label)
    return Window(predictions, labels)
