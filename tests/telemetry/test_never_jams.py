"""Telemetry that never jams: a record the store cannot take (a lone surrogate in a captured
text, a label past 64 bits) is split out of its batch, quarantined and counted while the rest
are delivered; the spill file is kept until its records are delivered, its unreadable lines
are skipped and counted, and a spill that cannot be written is counted, never raised."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from mltrail.telemetry import Capture, Feedback, Record, Telemetry
from mltrail.telemetry.stores.sqlite import SQLiteStore
from tests.telemetry.helpers import FlakySink, prediction, settings, wait

BAD_TEXT = "bad \ud800 movie"  # what json.loads makes of "bad \\ud800 movie"


def _spill(path: Path, records: list[Record]) -> None:
    """A spill file as a server writes it at shutdown."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_a_record_the_store_refuses_is_quarantined_and_the_rest_delivered(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    telemetry = Telemetry(settings(tmp_path, batch_size=16), [store])
    telemetry.start()
    for i in range(24):
        telemetry.submit(prediction(i))
        telemetry.submit(Capture(f"p{i}", time.time(), BAD_TEXT if i == 5 else f"text {i}"))
    telemetry.submit(Feedback("p3", time.time(), 2**64))  # "Integer exceeds 64-bit range"
    telemetry.submit(Feedback("p4", time.time(), 1))
    wait(lambda: telemetry.counters.quarantined["sqlite"] == 2 and not telemetry.depth)
    for i in range(24, 30):  # the writer goes on: later records are stored too
        telemetry.submit(prediction(i))
    telemetry.close()
    assert _count(tmp_path / "t.db", "predictions") == 30
    assert _count(tmp_path / "t.db", "inputs") == 23 and _count(tmp_path / "t.db", "feedback") == 1
    assert telemetry.counters.exported["sqlite"] == 30 + 23 + 1
    assert telemetry.counters.failures["sqlite"] == 0  # not retried: split
    lines = (tmp_path / "spill" / "sqlite.quarantine.jsonl").read_text("ascii").splitlines()
    quarantined = [json.loads(line) for line in lines]
    assert [q["record"] for q in quarantined] == [
        {"prediction_id": "p5", "time": quarantined[0]["record"]["time"], "input": BAD_TEXT,
         "kind": "capture"},
        {"prediction_id": "p3", "time": quarantined[1]["record"]["time"], "label": 2**64,
         "kind": "feedback"},
    ]  # fmt: skip
    assert "surrogates not allowed" in quarantined[0]["error"]
    assert "64-bit" in quarantined[1]["error"]
    assert not (tmp_path / "spill" / "sqlite.jsonl").exists()  # nothing spilled: not blocked


def test_a_spilled_bad_record_does_not_block_the_next_start(tmp_path: Path) -> None:
    _spill(
        tmp_path / "spill" / "sqlite.jsonl",
        [prediction(0), Capture("p0", 1.0, BAD_TEXT), prediction(1)],
    )
    telemetry = Telemetry(settings(tmp_path), [SQLiteStore(tmp_path / "t.db")])
    telemetry.start()
    telemetry.close()
    assert _count(tmp_path / "t.db", "predictions") == 2
    assert telemetry.counters.quarantined["sqlite"] == 1
    assert not (tmp_path / "spill" / "sqlite.jsonl").exists()


def test_a_connection_error_is_retried_whole_not_split(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path), [flaky])
    telemetry.start()
    for i in range(8):
        telemetry.submit(prediction(i))
    wait(lambda: telemetry.counters.failures["flaky"] >= 1)
    assert flaky.calls == telemetry.counters.failures["flaky"]  # one try per retry: no split
    flaky.down = False
    telemetry.close()
    assert len(flaky.stored) == 8 and telemetry.counters.quarantined["flaky"] == 0


def test_the_spill_file_is_kept_until_its_records_are_delivered(tmp_path: Path) -> None:
    spill = tmp_path / "spill" / "flaky.jsonl"
    _spill(spill, [prediction(i) for i in range(52)])
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path), [flaky])
    telemetry.start()
    wait(lambda: telemetry.counters.failures["flaky"] >= 1)
    # A kill -9 now (the store still down) would lose nothing: the file still holds them all.
    assert len(spill.read_text().splitlines()) == 52
    telemetry.submit(prediction(52))
    flaky.down = False
    wait(lambda: len(flaky.stored) == 53)
    wait(lambda: not spill.exists())
    telemetry.close()
    assert [r.prediction_id for r in flaky.stored] == [f"p{i}" for i in range(53)]


def test_a_cut_spill_line_is_skipped_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = tmp_path / "spill" / "flaky.jsonl"
    _spill(spill, [prediction(i) for i in range(5)])
    text = spill.read_text()
    spill.write_text(text[:-40] + "\n" + '{"kind": "feedback"}\n')  # cut the last; a wrong one
    flaky = FlakySink()
    flaky.down = False
    telemetry = Telemetry(settings(tmp_path), [flaky])
    with caplog.at_level(logging.ERROR, "mltrail.telemetry"):
        telemetry.start()
    telemetry.close()
    assert [r.prediction_id for r in flaky.stored] == ["p0", "p1", "p2", "p3"]
    assert telemetry.counters.spill_bad_lines == 2
    assert f"{spill}, line 5 cannot be read" in caplog.text
    assert f"{spill}, line 6 cannot be read" in caplog.text
    assert not spill.exists()


def test_a_spill_that_cannot_be_written_is_counted_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")  # the spill folder cannot be made under a file
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path, spill_dir=str(tmp_path / "file" / "spill")), [flaky])
    telemetry.start()
    for i in range(7):
        telemetry.submit(prediction(i))
    with caplog.at_level(logging.INFO, "mltrail.telemetry"):
        telemetry.close(timeout_s=0.1)  # no exception out of shutdown
    assert telemetry.counters.spill_failed["flaky"] == 7
    assert "cannot be written" in caplog.text and "7 records lost" in caplog.text
    assert "spilled {'flaky': 0}, spill failed {'flaky': 7}" in caplog.text  # the last line


def test_postgres_quarantines_what_it_cannot_hold_and_stores_the_rest(
    tmp_path: Path, postgres_dsn: str
) -> None:
    pytest.importorskip("psycopg")
    from mltrail.telemetry.stores.postgres import PostgresStore

    store = PostgresStore(postgres_dsn)
    telemetry = Telemetry(settings(tmp_path), [store])
    telemetry.start()
    for i in range(10):
        telemetry.submit(prediction(i))
    telemetry.submit(Feedback("p1", time.time(), 2**31))  # past PostgreSQL's INTEGER
    telemetry.submit(Capture("p2", time.time(), BAD_TEXT))
    telemetry.submit(Feedback("p3", time.time(), 1))
    telemetry.close()
    assert telemetry.counters.quarantined["postgres"] == 2
    assert telemetry.counters.exported["postgres"] == 11
    window = store.read_window()
    assert len(window.predictions) == 10 and window.feedback == {"p3": 1}
    lines = (tmp_path / "spill" / "postgres.quarantine.jsonl").read_text().splitlines()
    assert "NumericValueOutOfRange" in lines[0] or "out of range" in lines[0]
