"""A server's spill file (the predictions and feedback a store had not taken at shutdown),
at the server: kept until its records are delivered (a kill -9 after a restart loses none),
a cut line skipped and counted (the server still starts), and a spill that cannot be written
(a full disk, here a file-size limit on the server process) counted and logged, with the
shutdown still complete."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import time
from pathlib import Path

import httpx

from mltrail.telemetry import Feedback, Prediction, Record
from tests.serve.conftest import Server, start_server


def _records(n: int) -> list[Record]:
    records: list[Record] = []
    for i in range(n):
        records.append(
            Prediction(f"s{i}", 1000.0 + i, "/predict/text", "m@1", 1, "1", 0.9, 1.0, {})
        )
        if i % 10 == 0:
            records.append(Feedback(f"s{i}", 2000.0 + i, 1))
    return records


def _spill(path: Path, records: list[Record]) -> None:
    from dataclasses import asdict

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))


def _metric(server: Server, line: str) -> float:
    for row in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    raise AssertionError(f"no metric {line}")


def _wait(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _count(db: Path, table: str = "predictions") -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_a_cut_spill_line_is_skipped_and_counted_and_the_server_starts(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    spill = tmp_path / "srv" / "spill" / "sqlite.jsonl"
    _spill(spill, _records(3))
    spill.write_text(spill.read_text() + '{"prediction_id": "s3", "time": 10')  # cut short
    server = start_server(tmp_path / "srv", model_dirs)
    bad = _metric(server, "mltrail_telemetry_spill_bad_lines_total")
    _wait(lambda: not spill.exists())  # delivered, then removed
    server.stop()
    assert bad == 1.0 and _count(tmp_path / "srv" / "telemetry.db") == 3
    assert f"telemetry spill file {spill}, line 5 cannot be read" in server.log.read_text()


def test_the_spill_file_is_kept_until_delivered_so_a_kill_9_after_restart_loses_nothing(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    spill = tmp_path / "srv" / "spill" / "sqlite.jsonl"
    _spill(spill, _records(52))
    down = tmp_path / "srv" / "down.db"
    down.mkdir(parents=True)  # a folder: the store cannot be opened
    server = start_server(tmp_path / "srv", model_dirs, telemetry={
        "sqlite_path": str(down), "spill_dir": str(spill.parent)})  # fmt: skip
    _wait(lambda: _metric(server, 'mltrail_telemetry_sink_failures_total{sink="sqlite"}') >= 1)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)
    assert len(spill.read_text().splitlines()) == 52 + 6  # all still there

    again = start_server(tmp_path / "srv", model_dirs)  # the store is back
    _wait(lambda: not spill.exists())
    again.stop()
    db = tmp_path / "srv" / "telemetry.db"
    assert _count(db) == 52 and _count(db, "feedback") == 6


def test_a_spill_that_cannot_be_written_at_shutdown_is_counted_and_logged(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    down = tmp_path / "srv" / "down.db"
    down.mkdir(parents=True)
    server = start_server(tmp_path / "srv", model_dirs, telemetry={
        "sqlite_path": str(down), "spill_dir": str(tmp_path / "srv" / "spill"),
        "shutdown_timeout_s": 0.2})  # fmt: skip
    with server.client() as c:
        for i in range(30):
            texts = [f"review {i} {j}" for j in range(100)]
            assert c.post("/predict/text", json={"texts": texts}).status_code == 200
    _wait(lambda: _metric(server, 'mltrail_telemetry_sink_pending{sink="sqlite"}') == 3000)
    # A full disk for the server: no file it writes may grow past 64 KB (3,000 records
    # spilled are ~600 KB); Python ignores SIGXFSZ, so the write fails with EFBIG.
    limit = 64 * 1024
    resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
    server.stop()  # asserts "Application shutdown complete"
    log = server.log.read_text()
    assert "cannot be written" in log and "3000 records lost" in log
    assert "spilled {'sqlite': 0}, spill failed {'sqlite': 3000}" in log
    assert not (tmp_path / "srv" / "spill" / "sqlite.jsonl").exists()
