"""The telemetry store on PostgreSQL, shared by server replicas (``postgresql://...``).

The same tables as the SQLite store. One statement per table per batch
(``jsonb_populate_recordset``), inserts keyed by the prediction id (``ON CONFLICT DO
NOTHING``), so replicas and retried batches never double a record. Migrations run in order,
each once, under an advisory lock (several replicas may start together: one migrates, the
others wait for its lock and find the work done). After a failed write the connection is
dropped and opened again on the next try (the server may have restarted).

Imported only by its builder in ``mltrail.telemetry.stores``: psycopg comes with the serve
extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict

from mltrail.errors import MltrailError
from mltrail.telemetry.aggregate import PERCENTILES, Latency, latency_from_exact
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

MIGRATION_LOCK = 7270011
"""The advisory lock id migrations hold (any constant that other applications do not use)."""


def _insert(table: Table) -> str:
    """Rows from a JSON array of objects (the records, as orjson writes dataclasses)."""
    names = ", ".join(table.columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM "
        f"jsonb_populate_recordset(NULL::{table.name}, %s::jsonb) ON CONFLICT DO NOTHING"
    )


_INSERTS = [(t.record, _insert(t)) for t in TABLES]


class PostgresStore(SQLStore):
    name = "postgres"
    mark = "%s"
    MIGRATIONS = (
        Migration(
            1,
            (
                """CREATE TABLE predictions (
                prediction_id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL,
                endpoint TEXT NOT NULL, model_version TEXT NOT NULL, label INTEGER NOT NULL,
                class_name TEXT NOT NULL, confidence DOUBLE PRECISION NOT NULL,
                inference_ms DOUBLE PRECISION NOT NULL, profile JSONB NOT NULL)""",
                "CREATE INDEX predictions_time ON predictions (time)",
                """CREATE TABLE feedback (
                prediction_id TEXT NOT NULL, time DOUBLE PRECISION NOT NULL,
                label INTEGER NOT NULL, PRIMARY KEY (prediction_id, time))""",
            ),
        ),
        Migration(
            2,
            (
                """CREATE TABLE inputs (
                prediction_id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL,
                input TEXT NOT NULL)""",
            ),
        ),
        # The group a prediction's input belongs to (fairness monitoring); null for older
        # rows and for requests that name none.
        Migration(3, ("ALTER TABLE predictions ADD COLUMN group_name TEXT",)),
    )
    SCHEMA_TABLE_DDL = (
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())"
    )

    def __init__(self, dsn: str) -> None:
        super().__init__()
        # psycopg takes postgresql:// and postgres://; SQLAlchemy's driver suffix is ours.
        self.dsn = dsn.replace("postgresql+psycopg://", "postgresql://", 1)
        # Lookups (/feedback) reuse one connection per request thread (see SQLiteStore).
        self._readers: ThreadConnections[psycopg.Connection[Any]] = ThreadConnections()

    @property
    def location(self) -> str:
        try:
            info = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            return "on PostgreSQL"
        return f"{info.get('dbname', '?')} on {info.get('host', 'localhost')}"

    def _open(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, connect_timeout=5)

    @contextlib.contextmanager
    def _locked(self, conn: Any) -> Iterator[None]:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            yield

    def _query(
        self, statements: Sequence[Statement], missing_table_ok: bool = False
    ) -> list[list[tuple[Any, ...]]] | None:
        try:
            with psycopg.connect(self.dsn, connect_timeout=10) as conn:
                return [conn.execute(sql, args).fetchall() for sql, args in statements]
        except psycopg.errors.UndefinedTable as exc:
            if missing_table_ok:
                return None
            raise MltrailError(
                f"{self.location} is not an mltrail telemetry store: {exc}"
            ) from None
        except psycopg.Error as exc:
            raise MltrailError(f"cannot read the telemetry store: {exc}") from None

    def write(self, records: Sequence[Record]) -> None:
        conn = self._connection()
        tables = [(sql, [r for r in records if isinstance(r, kind)]) for kind, sql in _INSERTS]
        try:
            with conn.transaction():
                for sql, rows in tables:
                    if rows:
                        conn.execute(sql, (orjson.dumps(rows).decode(),))
        except (
            psycopg.errors.DataError,
            psycopg.errors.IntegrityError,
            TypeError,  # orjson: a lone surrogate, an integer past 64 bits
            ValueError,
            OverflowError,
        ) as exc:  # the data's fault: the connection is fine, keep it
            raise RecordsRejected(f"{type(exc).__name__}: {exc}") from exc
        except Exception:
            self._drop_writer()  # reconnect on the next try: the server may have restarted
            raise

    def _drop_writer(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def has_prediction(self, prediction_id: str) -> bool:
        return self.find_prediction(prediction_id) is not None

    def find_prediction(self, prediction_id: str) -> PredictionRef | None:
        """On the calling thread's connection (autocommit: each lookup sees the latest
        rows), opened on its first lookup and kept; dropped after an error."""
        conn = self._readers.get()
        if conn is None or conn.closed:
            conn = psycopg.connect(self.dsn, connect_timeout=5, autocommit=True)
            self._readers.keep(conn)
        try:
            row = conn.execute(FIND_PREDICTION.format(m=self.mark), (prediction_id,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except psycopg.Error:
            self._readers.drop()
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return None if row is None else PredictionRef(row[0], row[1])

    # Exact percentiles per model version (the temporal audit): PostgreSQL sorts each
    # version's latencies itself. The status page's time buckets use latency bins in both
    # stores, so that buckets read at different times add up (telemetry.bucket_cache).
    greatest = "GREATEST"

    def _latency_statement(self, group: str, where: str, args: Sequence[Any]) -> Statement:
        wanted = ", ".join(repr(q) for q in PERCENTILES)
        return (
            f"SELECT {group} AS g, count(*), percentile_cont(ARRAY[{wanted}]) "
            f"WITHIN GROUP (ORDER BY inference_ms) FROM predictions{where} GROUP BY 1",
            args,
        )

    def _latency_groups(self, rows: list[tuple[Any, ...]]) -> dict[Any, Latency]:
        return {group: latency_from_exact(int(n), values) for group, n, values in rows}

    def close(self) -> None:
        super().close()
        self._readers.close_all()
