"""The local telemetry store: one SQLite file beside the server (``telemetry.db``), WAL mode.

Writes are one transaction per batch, the rows going in as one JSON document that SQLite
unpacks itself (``json_each``): one call into SQLite per batch instead of one per row, so the
writer thread holds the interpreter lock for microseconds per record. Inserts are keyed by
the prediction id (``INSERT OR IGNORE``), so a retried batch never doubles a record.

Versioned like the PostgreSQL store: ``mltrail_telemetry_schema`` records each migration
applied, under SQLite's write lock (``BEGIN IMMEDIATE``), so two processes opening one file
migrate it once. Stores written before versions existed hold the tables of versions 1 and 2
without that table; those two migrations create their tables only if missing, so such a file
is adopted in place, its rows kept.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

from mltrail.errors import MltrailError
from mltrail.paths import SQLITE
from mltrail.telemetry.queue import RecordsRejected
from mltrail.telemetry.record import TABLES, Record, Table
from mltrail.telemetry.stores.base import (
    FIND_PREDICTION,
    SCHEMA_TABLE,
    Migration,
    PredictionRef,
    SQLStore,
    Statement,
    ThreadConnections,
)


def _insert(table: Table) -> str:
    """Rows from a JSON array of arrays, each in the order of the table's columns."""
    values = ", ".join(f"value->>{i}" for i in range(len(table.columns)))
    names = ", ".join(table.columns)
    return f"INSERT OR IGNORE INTO {table.name} ({names}) SELECT {values} FROM json_each(?)"


# Per table: its records' values in column order as a tuple (attrgetter: C code, no Python
# loop per field; arrays are cheaper than objects for orjson to write and SQLite to unpack).
_INSERTS = [(t.record, attrgetter(*t.columns), _insert(t)) for t in TABLES]


class SQLiteStore(SQLStore):
    name = "sqlite"
    mark = "?"
    MIGRATIONS = (
        Migration(
            1,
            (
                """CREATE TABLE IF NOT EXISTS predictions (
                prediction_id TEXT PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
                model_version TEXT NOT NULL, label INTEGER NOT NULL, class_name TEXT NOT NULL,
                confidence REAL NOT NULL, inference_ms REAL NOT NULL, profile TEXT NOT NULL)""",
                "CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time)",
                """CREATE TABLE IF NOT EXISTS feedback (
                prediction_id TEXT NOT NULL, time REAL NOT NULL, label INTEGER NOT NULL,
                PRIMARY KEY (prediction_id, time))""",
            ),
        ),
        Migration(
            2,
            (
                """CREATE TABLE IF NOT EXISTS inputs (
                prediction_id TEXT PRIMARY KEY, time REAL NOT NULL, input TEXT NOT NULL)""",
            ),
        ),
        # The group a prediction's input belongs to (fairness monitoring); null for older
        # rows and for requests that name none.
        Migration(3, ("ALTER TABLE predictions ADD COLUMN group_name TEXT",)),
    )
    SCHEMA_TABLE_DDL = (
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, "
        "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        # Lookups (/feedback) reuse one read-only connection per request thread: opening one
        # per request cost more than the query (a flood of unknown ids: 1,080 -> 143 req/s).
        self._readers: ThreadConnections[sqlite3.Connection] = ThreadConnections()

    @classmethod
    def from_uri(cls, uri: str) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a bare path."""
        return cls(uri.removeprefix(SQLITE))

    @property
    def location(self) -> str:
        return str(self.path)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, check_same_thread=False)
        _wal(conn)
        # WAL + NORMAL: a commit survives a crash of this process; only a power loss can
        # take the last batches (FULL would fsync every batch on the writer's clock).
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def _locked(self, conn: Any) -> Iterator[None]:
        # SQLite's write lock: a second migrator waits for it, then finds the work done.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _read_only(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30)

    def _query(
        self, statements: Sequence[Statement], missing_table_ok: bool = False
    ) -> list[list[tuple[Any, ...]]] | None:
        if not self.path.is_file():
            raise MltrailError(
                f"no telemetry store at {self.path}",
                hint="the server writes it (telemetry.sqlite_path); check the path",
            )
        conn = self._read_only()
        try:
            return [conn.execute(sql, args).fetchall() for sql, args in statements]
        except sqlite3.OperationalError as exc:
            if missing_table_ok and "no such table" in str(exc):
                return None
            raise MltrailError(f"{self.path} is not an mltrail telemetry store: {exc}") from None
        finally:
            conn.close()

    def version(self) -> int:
        return super().version() if self.path.is_file() else 0

    def write(self, records: Sequence[Record]) -> None:
        # orjson comes with the server (the serve extra), the only writer; reading needs only
        # the standard library.
        import orjson

        conn = self._connection()
        tables = [
            (sql, [row(r) for r in records if isinstance(r, kind)]) for kind, row, sql in _INSERTS
        ]
        try:
            with conn:  # one transaction: all of the batch or none of it
                for sql, rows in tables:
                    if rows:
                        conn.execute(sql, (orjson.dumps(rows),))
        except (sqlite3.DataError, sqlite3.IntegrityError) as exc:
            raise RecordsRejected(f"{type(exc).__name__}: {exc}") from exc

    def has_prediction(self, prediction_id: str) -> bool:
        return self.find_prediction(prediction_id) is not None

    def find_prediction(self, prediction_id: str) -> PredictionRef | None:
        """On the calling thread's read-only connection (asked from the request thread
        pool), opened on its first lookup and kept."""
        conn = self._readers.get()
        if conn is None:
            try:
                conn = self._read_only()
            except sqlite3.OperationalError:  # no file yet: nothing stored
                return None
            self._readers.keep(conn)
        try:
            # fetchall: the statement runs to its end, so no read transaction stays open on
            # the kept connection (it would pin an old snapshot and hold back checkpoints).
            rows = conn.execute(FIND_PREDICTION.format(m=self.mark), (prediction_id,)).fetchall()
        except sqlite3.OperationalError:  # no table yet: nothing stored
            return None
        return PredictionRef(rows[0][0], rows[0][1]) if rows else None

    def close(self) -> None:
        super().close()
        self._readers.close_all()


OPEN_TIMEOUT_S = 30.0
"""How long a connection waits for another's lock (SQLite's busy timeout)."""


def _wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting for other connections doing the same.

    Switching a new database to WAL takes an exclusive lock, and SQLite does not call the busy
    handler for it: two servers (or a server and the monitor) opening a new store at the same
    moment got "database is locked" at once, timeout or not (36 of 200 rounds of 8 threads).
    """
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
