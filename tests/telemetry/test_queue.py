"""The telemetry queue and writer: batched, retried while a sink is down, spilled at shutdown,
drops only when full and counted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mltrail.telemetry import Feedback, Prediction, Telemetry
from mltrail.telemetry.stores.sqlite import SQLiteStore
from tests.telemetry.helpers import FlakySink, prediction, settings, wait


def test_records_reach_sqlite_in_batches_and_retries_do_not_double(tmp_path: Path) -> None:
    sink = SQLiteStore(tmp_path / "t.db")
    telemetry = Telemetry(settings(tmp_path, batch_size=7), [sink])
    telemetry.start()
    for i in range(50):
        assert telemetry.submit(prediction(i))
    telemetry.submit(Feedback("p3", time.time(), 1))
    telemetry.close()
    sink.write([prediction(1), prediction(2)])  # a batch written twice (a retry)
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone() == (50,)
        assert conn.execute("SELECT label FROM feedback WHERE prediction_id='p3'").fetchone() == (
            1,
        )
    assert telemetry.counters.exported["sqlite"] == 51
    assert sink.has_prediction("p49") and not sink.has_prediction("nope")


def test_a_sink_that_is_down_gets_its_records_later(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path), [flaky])
    telemetry.start()
    for i in range(20):
        telemetry.submit(prediction(i))
    wait(lambda: flaky.calls >= 1 and telemetry.counters.pending.get("flaky") == 20)
    assert telemetry.counters.failures["flaky"] >= 1 and not flaky.stored
    flaky.down = False
    for i in range(20, 25):
        telemetry.submit(prediction(i))
    wait(lambda: len(flaky.stored) == 25)
    telemetry.close()
    assert [r.prediction_id for r in flaky.stored] == [f"p{i}" for i in range(25)]
    assert telemetry.counters.dropped_retry_full["flaky"] == 0


def test_records_a_sink_refuses_at_shutdown_are_spilled_then_sent_next_start(
    tmp_path: Path,
) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path), [flaky])
    telemetry.start()
    for i in range(10):
        telemetry.submit(prediction(i))
    telemetry.close(timeout_s=0.3)
    assert (tmp_path / "spill" / "flaky.jsonl").is_file() and not flaky.stored
    healthy = FlakySink()
    healthy.down = False
    again = Telemetry(settings(tmp_path), [healthy])
    again.start()
    again.close()
    assert [r.prediction_id for r in healthy.stored] == [f"p{i}" for i in range(10)]
    first = healthy.stored[0]
    assert isinstance(first, Prediction) and first.profile == {"chars": 10.0}
    assert not (tmp_path / "spill" / "flaky.jsonl").exists()


def test_only_a_full_queue_drops_and_drops_are_counted(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path, queue_size=5), [flaky])  # writer not started
    accepted = [telemetry.submit(prediction(i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert telemetry.counters.dropped_queue_full == 3 and telemetry.depth == 5


def test_a_full_retry_buffer_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(settings(tmp_path, retry_buffer=4), [flaky])
    telemetry.start()
    for i in range(6):
        telemetry.submit(prediction(i))
    wait(lambda: telemetry.counters.dropped_retry_full["flaky"] == 2)
    flaky.down = False
    telemetry.close()
    assert [r.prediction_id for r in flaky.stored] == ["p2", "p3", "p4", "p5"]
