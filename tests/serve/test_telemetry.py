"""The telemetry queue and writer: batched, retried while a sink is down, spilled at shutdown,
drops only when full and counted."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from mltrail.serve.settings import TelemetrySettings
from mltrail.serve.telemetry import (
    Capture,
    Feedback,
    Prediction,
    Record,
    SqliteSink,
    Telemetry,
)


def _prediction(i: int) -> Prediction:
    return Prediction(f"p{i}", time.time(), "/predict/text", "m@1", i % 2, str(i % 2), 0.9, 1.0,
                      {"chars": 10.0})  # fmt: skip


class FlakySink:
    """Fails while ``down`` is set, then stores what it is given."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.stored: list[Record] = []
        self.calls = 0

    def write(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("store is down")
        self.stored.extend(records)

    def close(self) -> None:
        pass


def _settings(tmp_path: Path, **kw: object) -> TelemetrySettings:
    values = {"sqlite_path": str(tmp_path / "t.db"), "spill_dir": str(tmp_path / "spill"),
              "flush_interval_s": 0.05} | kw  # fmt: skip
    return TelemetrySettings.model_validate(values)


def _wait(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_records_reach_sqlite_in_batches_and_retries_do_not_double(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "t.db")
    telemetry = Telemetry(_settings(tmp_path, batch_size=7), [sink])
    telemetry.start()
    for i in range(50):
        assert telemetry.submit(_prediction(i))
    telemetry.submit(Feedback("p3", time.time(), 1))
    telemetry.close()
    sink.write([_prediction(1), _prediction(2)])  # a batch written twice (a retry)
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone() == (50,)
        assert conn.execute("SELECT label FROM feedback WHERE prediction_id='p3'").fetchone() == (
            1,
        )
    assert telemetry.counters.exported["sqlite"] == 51
    assert sink.has_prediction("p49") and not sink.has_prediction("nope")


def test_a_sink_that_is_down_gets_its_records_later(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(_settings(tmp_path), [flaky])
    telemetry.start()
    for i in range(20):
        telemetry.submit(_prediction(i))
    _wait(lambda: flaky.calls >= 1 and telemetry.counters.pending.get("flaky") == 20)
    assert telemetry.counters.failures["flaky"] >= 1 and not flaky.stored
    flaky.down = False
    for i in range(20, 25):
        telemetry.submit(_prediction(i))
    _wait(lambda: len(flaky.stored) == 25)
    telemetry.close()
    assert [r.prediction_id for r in flaky.stored] == [f"p{i}" for i in range(25)]
    assert telemetry.counters.dropped_retry_full["flaky"] == 0


def test_records_a_sink_refuses_at_shutdown_are_spilled_then_sent_next_start(
    tmp_path: Path,
) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(_settings(tmp_path), [flaky])
    telemetry.start()
    for i in range(10):
        telemetry.submit(_prediction(i))
    telemetry.close(timeout_s=0.3)
    assert (tmp_path / "spill" / "flaky.jsonl").is_file() and not flaky.stored
    healthy = FlakySink()
    healthy.down = False
    again = Telemetry(_settings(tmp_path), [healthy])
    again.start()
    again.close()
    assert [r.prediction_id for r in healthy.stored] == [f"p{i}" for i in range(10)]
    first = healthy.stored[0]
    assert isinstance(first, Prediction) and first.profile == {"chars": 10.0}
    assert not (tmp_path / "spill" / "flaky.jsonl").exists()


def test_only_a_full_queue_drops_and_drops_are_counted(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(_settings(tmp_path, queue_size=5), [flaky])  # writer not started
    accepted = [telemetry.submit(_prediction(i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert telemetry.counters.dropped_queue_full == 3 and telemetry.depth == 5


def test_a_full_retry_buffer_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    flaky = FlakySink()
    telemetry = Telemetry(_settings(tmp_path, retry_buffer=4), [flaky])
    telemetry.start()
    for i in range(6):
        telemetry.submit(_prediction(i))
    _wait(lambda: telemetry.counters.dropped_retry_full["flaky"] == 2)
    flaky.down = False
    telemetry.close()
    assert [r.prediction_id for r in flaky.stored] == ["p2", "p3", "p4", "p5"]


def test_the_wandb_and_mlflow_sinks_hold_the_records(tmp_path: Path) -> None:
    """The real clients: W&B offline (read back with W&B's own reader), MLflow's store."""
    from mlflow.tracking import MlflowClient

    from mltrail.bench.tool_runtime import wandb_inspect
    from mltrail.serve.telemetry import build_sinks

    settings = _settings(
        tmp_path,
        sinks=["wandb", "mlflow"],
        wandb_dir=str(tmp_path),
        mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    telemetry = Telemetry(settings, build_sinks(settings))
    telemetry.start()
    for i in range(5):
        telemetry.submit(_prediction(i))
    telemetry.close()
    assert telemetry.counters.exported == {"wandb": 5, "mlflow": 5}
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    found = wandb_inspect(run_dir)
    assert found["state"] == "finished" and found["summary"]["confidence"] == 0.9
    assert found["summary"]["input/chars"] == 10.0
    client = MlflowClient(settings.mlflow_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "mltrail-serving"]
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "prediction")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0, 1, 0, 1, 0]
    assert run.info.status == "FINISHED"


def test_the_postgres_sink_stores_batches_once_and_answers_lookups(
    tmp_path: Path, postgres_dsn: str
) -> None:
    import psycopg

    from mltrail.serve.telemetry import PostgresSink

    sink = PostgresSink(postgres_dsn)
    telemetry = Telemetry(_settings(tmp_path, batch_size=9), [sink])
    telemetry.start()
    for i in range(40):
        telemetry.submit(_prediction(i))
    telemetry.submit(Feedback("p7", time.time(), 0))
    telemetry.submit(Capture("p7", time.time(), "the input of p7"))
    telemetry.close()
    sink.write([_prediction(3), _prediction(4)])  # a retried batch: stored once
    other = PostgresSink(postgres_dsn)  # a second replica: the schema is already there
    other.write([_prediction(99)])
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone() == (41,)
        assert conn.execute("SELECT label FROM feedback").fetchall() == [(0,)]
        versions = conn.execute("SELECT version FROM mltrail_telemetry_schema").fetchall()
        assert versions == [(1,), (2,)]  # migration 2: the inputs table
        assert conn.execute("SELECT prediction_id, input FROM inputs").fetchall() == [
            ("p7", "the input of p7")
        ]
        profile = conn.execute("SELECT profile FROM predictions LIMIT 1").fetchone()[0]
    assert profile == {"chars": 10.0}
    assert sink.has_prediction("p39") and not sink.has_prediction("nope")


def test_a_postgres_store_that_is_down_gets_its_records_when_it_is_back(
    tmp_path: Path, postgres_dsn: str
) -> None:
    import psycopg

    from mltrail.serve.telemetry import PostgresSink

    down = PostgresSink("postgresql://postgres@127.0.0.1:9/nothing")  # nothing listens on 9
    telemetry = Telemetry(_settings(tmp_path), [down])
    telemetry.start()
    for i in range(10):
        telemetry.submit(_prediction(i))
    _wait(lambda: telemetry.counters.failures["postgres"] >= 1)
    down.dsn = postgres_dsn  # the store comes back (here: at its address)
    _wait(lambda: telemetry.counters.exported["postgres"] == 10, timeout_s=30)
    telemetry.close()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone() == (10,)
