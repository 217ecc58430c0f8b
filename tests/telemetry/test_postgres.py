"""The PostgreSQL store: shared by replicas, retried while it is down, upgraded in place."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mltrail.errors import MltrailError
from mltrail.telemetry import Capture, Feedback, Telemetry
from tests.telemetry.helpers import prediction, settings, wait

psycopg = pytest.importorskip("psycopg")

from mltrail.telemetry.stores.postgres import PostgresStore  # noqa: E402


def test_replicas_share_one_store_and_its_schema(tmp_path: Path, postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    telemetry = Telemetry(settings(tmp_path, batch_size=9), [store])
    telemetry.start()
    for i in range(40):
        telemetry.submit(prediction(i))
    telemetry.submit(Feedback("p7", time.time(), 0))
    telemetry.submit(Capture("p7", time.time(), "the input of p7"))
    telemetry.close()
    store.write([prediction(3), prediction(4)])  # a retried batch: stored once
    other = PostgresStore(postgres_dsn)  # a second replica: the schema is already there
    other.write([prediction(99)])
    other.close()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone() == (41,)
        assert conn.execute("SELECT label FROM feedback").fetchall() == [(0,)]
        versions = conn.execute("SELECT version FROM mltrail_telemetry_schema").fetchall()
        assert versions == [(1,), (2,), (3,)]  # 2: the inputs table; 3: group_name
        assert conn.execute("SELECT prediction_id, input FROM inputs").fetchall() == [
            ("p7", "the input of p7")
        ]
        profile = conn.execute("SELECT profile FROM predictions LIMIT 1").fetchone()[0]
    assert profile == {"chars": 10.0}
    assert store.has_prediction("p39") and not store.has_prediction("nope")


def test_a_store_that_is_down_gets_its_records_when_it_is_back(
    tmp_path: Path, postgres_dsn: str
) -> None:
    down = PostgresStore("postgresql://postgres@127.0.0.1:9/nothing")  # nothing listens on 9
    telemetry = Telemetry(settings(tmp_path), [down])
    telemetry.start()
    for i in range(10):
        telemetry.submit(prediction(i))
    wait(lambda: telemetry.counters.failures["postgres"] >= 1)
    down.dsn = postgres_dsn  # the store comes back (here: at its address)
    wait(lambda: telemetry.counters.exported["postgres"] == 10, timeout_s=30)
    telemetry.close()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone() == (10,)


def test_rows_of_an_older_version_survive_its_upgrade(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    assert store.migrate(to=1) == 1
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(
            "INSERT INTO predictions VALUES ('old', 10.0, '/predict/text', 'm@0', 1, 'pos', "
            "0.8, 2.0, '{\"chars\": 5.0}')"
        )
    assert store.migrate() == 3
    (old,) = store.read_window().predictions
    assert old.prediction_id == "old" and old.profile == {"chars": 5.0}


def test_a_store_newer_than_this_code_is_refused(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    store.migrate()
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO mltrail_telemetry_schema (version) VALUES (99)")
    with pytest.raises(MltrailError, match="schema version 99, newer than this mltrail's"):
        store.migrate()
