"""The monitor reads the telemetry the server wrote, from SQLite and from PostgreSQL alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mltrail.cli import main
from mltrail.errors import MltrailError
from mltrail.monitor.store import read_window
from mltrail.monitor.summary import summarize
from mltrail.serve.settings import TelemetrySettings
from mltrail.serve.telemetry import Feedback, PostgresSink, Prediction, SqliteSink, Telemetry


def _records() -> list[Prediction | Feedback]:
    records: list[Prediction | Feedback] = []
    for i in range(10):  # 10 predictions, 1 s apart: 6 of class "1", latency i ms
        label = 1 if i < 6 else 0
        records.append(
            Prediction(
                f"p{i}",
                1000.0 + i,
                "/predict/text",
                "m@1",
                label,
                str(label),
                0.5 + i / 20,
                float(i),
                {"chars": 10.0 * i, "oov_rate": 0.1},
            )
        )
    records += [
        Feedback("p0", 2000.0, 1),
        Feedback("p1", 2000.0, 0),
        Feedback("p1", 2001.0, 1),
        Feedback("p7", 2000.0, 1),
    ]  # p1 corrected to 1: the latest label counts
    return records  # fmt: skip


def _write(sink: SqliteSink | PostgresSink, tmp_path: Path) -> None:
    telemetry = Telemetry(TelemetrySettings(spill_dir=str(tmp_path / "spill")), [sink])
    telemetry.start()
    for record in _records():
        telemetry.submit(record)
    telemetry.close()


def _check(store: str) -> None:
    summary = summarize(read_window(store))
    assert summary["predictions"] == 10 and summary["from"] == 1000.0 and summary["to"] == 1009.0
    assert summary["class_mix"] == {"0": 0.4, "1": 0.6}
    assert summary["confidence"]["mean"] == pytest.approx(0.725)
    assert summary["inference_ms"]["p50"] == pytest.approx(4.5)
    assert summary["inputs"] == {"chars": pytest.approx(45.0), "oov_rate": pytest.approx(0.1)}
    # p0 right (1), p1 right after its correction (1), p7 wrong (predicted 0, truly 1)
    assert summary["feedback"] == {"labelled": 3, "accuracy": pytest.approx(2 / 3)}
    recent = summarize(read_window(store, since=1005.0, limit=3))
    assert recent["predictions"] == 3 and recent["from"] == 1007.0


def test_the_monitor_reads_the_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(SqliteSink(tmp_path / "telemetry.db"), tmp_path)
    _check(str(tmp_path / "telemetry.db"))
    _check(f"sqlite:///{tmp_path / 'telemetry.db'}")
    assert main(["monitor", "--store", str(tmp_path / "telemetry.db"),
                 "--summary-out", str(tmp_path / "s.json")]) == 0  # fmt: skip
    written = json.loads((tmp_path / "s.json").read_text())
    assert written == summarize(read_window(str(tmp_path / "telemetry.db")))
    text = capsys.readouterr().out  # a summary for a person by default
    assert text.startswith("10 predictions, 1970-01-01 00:16:40 to 1970-01-01 00:16:49 UTC\n")
    assert "class mix   0 40.0%, 1 60.0%" in text
    assert "feedback    3 labelled, live accuracy 0.667" in text
    assert main(["monitor", "--store", str(tmp_path / "telemetry.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == written  # --json: all of it, on stdout
    assert main(["monitor", "--store", str(tmp_path / "telemetry.db"), "--minutes", "1"]) == 0
    assert capsys.readouterr().out == "no predictions in the window\n"


def test_a_missing_store_is_an_error_that_says_so(tmp_path: Path) -> None:
    with pytest.raises(MltrailError, match="no telemetry store at"):
        read_window(str(tmp_path / "nothing.db"))


def test_the_monitor_reads_the_shared_postgres_store(tmp_path: Path, postgres_dsn: str) -> None:
    _write(PostgresSink(postgres_dsn), tmp_path)
    _check(postgres_dsn)
