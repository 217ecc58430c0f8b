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


@dataclass(frozen=True)
class Filter:
    """Which predictions: a time range, an endpoint, a model version (``None``: any)."""

    since: float | None = None
    until: float | None = None
    endpoint: str | None = None
    model_version: str | None = None


def _query(f: Filter, mark: str) -> tuple[str, list[Any]]:
    where, args = [], []
    for clause, value in (
        ("time >= {m}", f.since),
        ("time < {m}", f.until),
        ("endpoint = {m}", f.endpoint),
        ("model_version = {m}", f.model_version),
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
    model_version: str | None = None,
) -> Window:
    """The newest ``limit`` predictions in [since, until) (of ``endpoint``, of
    ``model_version``), with their feedback."""
    f = Filter(since, until, endpoint, model_version)
    if store.startswith(("postgresql://", "postgres://")):
        return _read_postgres(store, f, limit)
    return _read_sqlite(Path(store.removeprefix("sqlite:///")), f, limit)


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


def _read_sqlite(path: Path, f: Filter, limit: int) -> Window:
    if not path.is_file():
        raise MltrailError(
            f"no telemetry store at {path}",
            hint="the server writes it (telemetry.sqlite_path); check the path",
        )
    sql, args = _query(f, "?")
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


def _read_postgres(dsn: str, f: Filter, limit: int) -> Window:
    import psycopg

    sql, args = _query(f, "%s")
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


@dataclass(frozen=True)
class Labelled:
    """A served input whose true label came back as feedback (the latest label counts)."""

    prediction_id: str
    time: float
    model_version: str
    predicted: int
    label: int
    input: str


# The newest label of each prediction that has a captured input.
_LABELLED = """
SELECT p.prediction_id, p.time, p.model_version, p.label, f.label, i.input
FROM predictions p
JOIN inputs i ON i.prediction_id = p.prediction_id
JOIN feedback f ON f.prediction_id = p.prediction_id
WHERE p.endpoint = {m} AND p.time > {m}
  AND f.time = (SELECT max(f2.time) FROM feedback f2 WHERE f2.prediction_id = p.prediction_id)
ORDER BY p.time"""


def read_labelled(store: str, endpoint: str, after: float = 0.0) -> list[Labelled]:
    """Captured inputs of ``endpoint`` served after ``after`` that have feedback."""
    if store.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            with psycopg.connect(store, connect_timeout=10) as conn:
                rows = conn.execute(_LABELLED.format(m="%s"), (endpoint, after)).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
        except psycopg.Error as exc:
            raise MltrailError(f"cannot read the telemetry store: {exc}") from None
    else:
        path = Path(store.removeprefix("sqlite:///"))
        if not path.is_file():
            raise MltrailError(f"no telemetry store at {path}")
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = lite.execute(_LABELLED.format(m="?"), (endpoint, after)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # a store from before input capture: nothing captured
            raise MltrailError(f"{path} is not an mltrail telemetry store: {exc}") from None
        finally:
            lite.close()
    return [Labelled(r[0], float(r[1]), r[2], int(r[3]), int(r[4]), r[5]) for r in rows]
