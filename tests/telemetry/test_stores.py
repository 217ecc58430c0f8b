"""The contract every telemetry store keeps, run over every store the registry holds: a new
store is tested by being registered (and given a test URI in ``STORE_URIS``, tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mltrail.errors import MltrailError, ParamsError
from mltrail.telemetry import (
    Capture,
    Feedback,
    Filter,
    Prediction,
    Record,
    TelemetryStore,
    open_store,
    read_labelled,
    read_window,
    store_kinds,
)
from mltrail.telemetry.record import PREDICTION_COLUMNS
from tests.telemetry.helpers import window_records


def test_every_store_is_registered_under_its_sink_name(uri: str) -> None:
    store = open_store(uri)
    assert isinstance(store, TelemetryStore)
    assert store.name in {kind.name for kind in store_kinds()}


def test_a_store_reads_back_the_typed_records_it_wrote(uri: str, store: TelemetryStore) -> None:
    records = window_records()
    store.write(records)
    window = store.read_window()
    assert window.predictions == [r for r in records if isinstance(r, Prediction)]  # typed
    assert window.feedback == {"p0": 1, "p1": 1, "p7": 1}  # p1's latest label
    assert read_window(uri).predictions == window.predictions  # by URI, through the registry


def test_a_window_is_the_newest_predictions_that_match(store: TelemetryStore) -> None:
    store.write(window_records())
    store.write([Prediction("q0", 1003.5, "/predict/image", "m@2", 0, "0", 0.9, 1.0, {})])

    def ids(limit: int = 100, **where: Any) -> list[str]:
        return [p.prediction_id for p in store.read_window(Filter(**where), limit).predictions]

    assert ids(since=1005.0, limit=3) == ["p7", "p8", "p9"]
    assert ids(since=1002.0, until=1005.0) == ["p2", "p3", "q0", "p4"]
    assert ids(endpoint="/predict/image") == ids(model_version="m@2") == ["q0"]
    assert ids(endpoint="/predict/text", limit=2) == ["p8", "p9"]
    # Feedback only for the window's predictions.
    assert store.read_window(Filter(since=1005.0)).feedback == {"p7": 1}
    assert store.read_window(Filter(until=1001.0)).feedback == {"p0": 1}


def test_a_batch_written_twice_is_stored_once(store: TelemetryStore) -> None:
    assert not store.has_prediction("p0")  # nothing written yet: no store, no table
    records = window_records()
    store.write(records)
    store.write(records)  # a retried batch
    window = store.read_window()
    assert len(window.predictions) == 10 and window.feedback == {"p0": 1, "p1": 1, "p7": 1}
    assert store.has_prediction("p9") and not store.has_prediction("nope")


def test_labelled_inputs_are_read_with_their_latest_label(uri: str, store: TelemetryStore) -> None:
    records = [
        Prediction(f"p{i}", 100.0 + i, "/predict/text", "m@1", 0, "0", 0.9, 1.0, {})
        for i in range(4)
    ]
    store.write(
        [
            *records,
            Capture("p0", 100.0, "first"),
            Capture("p1", 101.0, "second"),
            Capture("p3", 103.0, "no label"),
            Feedback("p0", 200.0, 1),
            Feedback("p0", 201.0, 0),
            Feedback("p1", 200.0, 1),
            Feedback("p2", 200.0, 1),  # labelled, but its input was not captured
        ]
    )
    found = store.read_labelled("/predict/text")
    assert [(r.prediction_id, r.input, r.label, r.predicted) for r in found] == [
        ("p0", "first", 0, 0),
        ("p1", "second", 1, 0),
    ]
    assert [r.prediction_id for r in store.read_labelled("/predict/text", after=100.5)] == ["p1"]
    assert store.read_labelled("/predict/image") == []
    assert read_labelled(uri, "/predict/text") == found


def test_migrate_is_versioned_and_idempotent(store: TelemetryStore) -> None:
    assert store.version() == 0
    latest = store.migrate()
    assert latest >= 2 and store.version() == latest
    assert store.migrate() == latest and store.version() == latest  # nothing left to do
    assert store.read_window().predictions == []  # the tables exist, empty


def test_a_store_is_upgraded_in_place(store: TelemetryStore) -> None:
    """Version 1 had no ``inputs`` table: a store at 1 reads, and is upgraded by a migration
    or by the first write."""
    assert store.migrate(to=1) == 1 and store.version() == 1
    assert store.read_labelled("/predict/text") == []  # nothing captured before version 2
    assert store.migrate(to=1) == 1
    store.write([*window_records(), Capture("p0", 1000.0, "an input")])  # migrates first
    assert store.version() == store.migrate() >= 2
    assert [r.input for r in store.read_labelled("/predict/text")] == ["an input"]


def test_reading_a_store_nothing_was_written_to_says_so(store: TelemetryStore) -> None:
    with pytest.raises(MltrailError, match="telemetry store"):
        store.read_window()


# -- the registry ------------------------------------------------------------------------------


def test_a_store_is_chosen_by_the_uri_scheme(tmp_path: Path) -> None:
    from mltrail.telemetry.stores.postgres import PostgresStore
    from mltrail.telemetry.stores.sqlite import SQLiteStore

    for uri, path in (
        ("telemetry.db", Path("telemetry.db")),
        (str(tmp_path / "t.db"), tmp_path / "t.db"),
        ("sqlite:///relative/t.db", Path("relative/t.db")),
        (f"sqlite:///{tmp_path / 't.db'}", tmp_path / "t.db"),
    ):
        store = open_store(uri)
        assert isinstance(store, SQLiteStore) and store.path == path, uri
    for uri in ("postgresql://u@h:5432/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        store = open_store(uri)
        assert isinstance(store, PostgresStore) and store.dsn.startswith("postgres"), uri
        assert "+psycopg" not in store.dsn
    assert not (tmp_path / "t.db").exists()  # choosing a store opens nothing


def test_an_unknown_scheme_lists_the_stores_and_hides_the_uri() -> None:
    with pytest.raises(ParamsError) as info:
        open_store("mysql://user:secret@db/telemetry")
    message = str(info.value)
    assert "mysql://" in message and "secret" not in message
    assert all(kind.name in message for kind in store_kinds())


def test_a_store_imports_its_driver_only_when_chosen(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom mltrail.telemetry import open_store, read_window\n"
        f"open_store({str(tmp_path / 't.db')!r})\n"
        "assert 'psycopg' not in sys.modules and 'orjson' not in sys.modules, 'eager'\n"
        "open_store('postgresql://u@h/db')\nassert 'psycopg' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_record_is_the_one_column_list_and_a_new_field_needs_migrations() -> None:
    assert PREDICTION_COLUMNS == (
        "prediction_id", "time", "endpoint", "model_version", "label", "class_name",
        "confidence", "inference_ms", "profile", "group_name",  # group_name: migration 3
    )  # fmt: skip


def test_a_prediction_s_group_is_stored_and_read_back(store: TelemetryStore) -> None:
    """Schema 3: the group a client named is kept with its prediction, in windows and in the
    labelled rows the retrain loop reads; a prediction without one reads back None."""
    records: list[Record] = [
        Prediction("g0", 100.0, "/predict/text", "m@1", 1, "pos", 0.9, 1.0, {}, "en-GB"),
        Prediction("g1", 101.0, "/predict/text", "m@1", 0, "neg", 0.8, 1.0, {}),
        Capture("g0", 100.0, "a text"),
        Capture("g1", 101.0, "another"),
        Feedback("g0", 200.0, 1),
        Feedback("g1", 200.0, 1),
    ]
    store.write(records)
    assert [p.group_name for p in store.read_window().predictions] == ["en-GB", None]
    labelled = store.read_labelled("/predict/text")
    assert [(r.prediction_id, r.group_name) for r in labelled] == [("g0", "en-GB"), ("g1", None)]


def test_a_version_2_store_is_read_then_migrated_to_3_keeping_its_rows(
    store: TelemetryStore,
) -> None:
    """A store an older server wrote (schema 2, no group_name) reads as before, its rows with
    no group; migration 3 adds the column in place, and new rows carry their group."""
    assert store.migrate(to=2) == 2
    old = Prediction("old", 10.0, "/predict/text", "m@0", 1, "pos", 0.8, 2.0, {"chars": 5.0})
    # What a schema-2 server writes: the columns it knew, none of them the group.
    columns = [c for c in PREDICTION_COLUMNS if c != "group_name"]
    values = [getattr(old, c) for c in columns]
    _insert_raw(store, columns, values)
    (read,) = store.read_window().predictions
    assert read.prediction_id == "old" and read.group_name is None
    assert store.migrate() == 3 and store.version() == 3
    store.write([Prediction("new", 20.0, "/predict/text", "m@1", 0, "neg", 0.7, 1.0, {}, "b")])
    assert [(p.prediction_id, p.group_name) for p in store.read_window().predictions] == [
        ("old", None),
        ("new", "b"),
    ]


def _insert_raw(store: TelemetryStore, columns: list[str], values: list[Any]) -> None:
    """Rows as an older server wrote them, on a connection of the store's own driver."""
    import json
    import sqlite3

    import psycopg

    from mltrail.telemetry.stores.postgres import PostgresStore
    from mltrail.telemetry.stores.sqlite import SQLiteStore

    values = [json.dumps(v) if isinstance(v, dict) else v for v in values]
    names = ", ".join(columns)
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute(
                f"INSERT INTO predictions ({names}) VALUES ({', '.join('?' * len(values))})", values
            )
        return
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.dsn) as pg:
        pg.execute(
            f"INSERT INTO predictions ({names}) VALUES ({', '.join(['%s'] * len(values))})", values
        )
