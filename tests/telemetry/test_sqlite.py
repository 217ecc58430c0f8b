"""The SQLite store: a file made before schema versions is adopted in place, a newer one is
refused, and two processes opening a new file migrate it once."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from mltrail.errors import MltrailError
from mltrail.telemetry import Capture, read_window
from mltrail.telemetry.stores.base import SCHEMA_TABLE
from mltrail.telemetry.stores.sqlite import SQLiteStore
from tests.telemetry.helpers import prediction

# What mltrail wrote before the SQLite store had versions (serve/telemetry.py's SCHEMA);
# the first stores had no ``inputs`` table (input capture came later).
UNVERSIONED = """
CREATE TABLE IF NOT EXISTS predictions (
    prediction_id TEXT PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
    model_version TEXT NOT NULL, label INTEGER NOT NULL, class_name TEXT NOT NULL,
    confidence REAL NOT NULL, inference_ms REAL NOT NULL, profile TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT NOT NULL, time REAL NOT NULL, label INTEGER NOT NULL,
    PRIMARY KEY (prediction_id, time));
"""
INPUTS = """
CREATE TABLE IF NOT EXISTS inputs (
    prediction_id TEXT PRIMARY KEY, time REAL NOT NULL, input TEXT NOT NULL);
"""


@pytest.mark.parametrize("with_inputs", [True, False], ids=["last-unversioned", "first"])
def test_a_store_made_before_versions_is_upgraded_in_place(
    tmp_path: Path, with_inputs: bool
) -> None:
    path = tmp_path / "telemetry.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(UNVERSIONED + (INPUTS if with_inputs else ""))
        conn.execute(
            "INSERT INTO predictions VALUES ('old', 10.0, '/predict/text', 'm@0', 1, 'pos', "
            "0.8, 2.0, '{\"chars\": 5.0}')"
        )
        conn.execute("INSERT INTO feedback VALUES ('old', 11.0, 1)")
    store = SQLiteStore(path)
    assert store.version() == 0
    assert [p.prediction_id for p in read_window(str(path)).predictions] == ["old"]
    assert store.migrate() == 3 and store.version() == 3
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchall() == [(1,), (2,), (3,)]
    window = store.read_window()
    (old,) = window.predictions
    assert (
        old.profile == {"chars": 5.0} and old.class_name == "pos" and window.feedback == {"old": 1}
    )
    store.write([prediction(1, 20.0), Capture("old", 10.0, "kept")])
    assert [p.prediction_id for p in store.read_window().predictions] == ["old", "p1"]
    assert [r.input for r in store.read_labelled("/predict/text")] == ["kept"]
    store.close()


def test_a_store_newer_than_this_code_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    store.migrate()
    with closing(sqlite3.connect(tmp_path / "t.db")) as conn, conn:
        conn.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (99)")
    with pytest.raises(MltrailError, match="schema version 99, newer than this mltrail's"):
        store.migrate()
    with pytest.raises(MltrailError, match="upgrade mltrail"):
        store.write([prediction(1)])


@pytest.mark.parametrize("round_", range(12))
def test_writers_opening_a_new_store_together_migrate_it_once(tmp_path: Path, round_: int) -> None:
    """8 writers at once on a new file: each waits for the others. Switching a new database to
    WAL is not covered by SQLite's busy timeout: 8 bare connections doing it at once failed in
    36 of 200 rounds, and this test (4 writers then) failed once in CI under load; through
    migrate() the writers rarely line up that closely on an idle machine, hence the rounds."""
    path = tmp_path / "t.db"
    found: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        try:
            found.append(SQLiteStore(path).migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and found == [3] * 8
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchall() == [(1,), (2,), (3,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_missing_store_is_an_error_that_says_so(tmp_path: Path) -> None:
    with pytest.raises(MltrailError, match="no telemetry store at"):
        read_window(str(tmp_path / "nothing.db"))
    assert not (tmp_path / "nothing.db").exists()  # reading creates nothing
    with closing(sqlite3.connect(tmp_path / "other.db")) as conn:
        conn.execute("CREATE TABLE something (x)")
    with pytest.raises(MltrailError, match="is not an mltrail telemetry store"):
        read_window(str(tmp_path / "other.db"))
