"""Reading a window of telemetry from SQLite (a path or ``sqlite:///path``) or PostgreSQL
(``postgresql://...``): the same two tables, the same answer."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mltrail.errors import MltrailError

COLUMNS = ("prediction_id", "time", "endpoint", "model_version", "label", "class_name",
           "confidence", "inference_ms", "profile")  # fmt: skip


@dataclass
class Window:
    """Predictions (oldest first) and the feedback labels given for them."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, int] = field(default_factory=dict)


def _query(
    since: float | None, until: float | None, endpoint: str | None, mark: str
) -> tuple[str, list[Any]]:
    where, args = [], []
    for clause, value in (
        ("time >= {m}", since),
        ("time < {m}", until),
        ("endpoint = {m}", endpoint),
    ):
        if value is not None:
            where.append(clause.format(m=mark))
            args.append(value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM predictions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, args


def read_window(
    store: str,
    since: float | None = None,
    until: float | None = None,
    endpoint: str | None = None,
    limit: int = 100_000,
) -> Window:
    """The newest ``limit`` predictions in [since, until) (of ``endpoint``), with feedback."""
    if store.startswith(("postgresql://", "postgres://")):
        return _read_postgres(store, since, until, endpoint, limit)
    return _read_sqlite(Path(store.removeprefix("sqlite:///")), since, until, endpoint, limit)


def _rows_to_window(rows: list[tuple[Any, ...]], feedback: list[tuple[Any, ...]]) -> Window:
    predictions = []
    for row in reversed(rows):  # queried newest first, returned oldest first
        record = dict(zip(COLUMNS, row, strict=True))
        if isinstance(record["profile"], str):
            record["profile"] = json.loads(record["profile"])
        predictions.append(record)
    ids = {p["prediction_id"] for p in predictions}
    labels: dict[str, int] = {}
    for prediction_id, label in feedback:  # ordered by time: the latest label wins
        if prediction_id in ids:
            labels[prediction_id] = int(label)
    return Window(predictions, labels)


def _read_sqlite(
    path: Path, since: float | None, until: float | None, endpoint: str | None, limit: int
) -> Window:
    if not path.is_file():
        raise MltrailError(
            f"no telemetry store at {path}",
            hint="the server writes it (telemetry.sqlite_path); check the path",
        )
    sql, args = _query(since, until, endpoint, "?")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(sql + " ORDER BY time DESC LIMIT ?", [*args, limit]).fetchall()
        feedback = conn.execute(
            "SELECT prediction_id, label FROM feedback ORDER BY time"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        raise MltrailError(f"{path} is not an mltrail telemetry store: {exc}") from None
    finally:
        conn.close()
    return _rows_to_window(rows, feedback)


def _read_postgres(
    dsn: str, since: float | None, until: float | None, endpoint: str | None, limit: int
) -> Window:
    import psycopg

    sql, args = _query(since, until, endpoint, "%s")
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            rows = conn.execute(sql + " ORDER BY time DESC LIMIT %s", [*args, limit]).fetchall()
            feedback = conn.execute(
                "SELECT f.prediction_id, f.label FROM feedback f JOIN (" + sql +
                " ORDER BY time DESC LIMIT %s) p USING (prediction_id) ORDER BY f.time",
                [*args, limit],
            ).fetchall()  # fmt: skip
    except psycopg.Error as exc:
        raise MltrailError(f"cannot read the telemetry store: {exc}") from None
    return _rows_to_window(rows, feedback)
