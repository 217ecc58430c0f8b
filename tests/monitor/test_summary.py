"""The monitor summarizes the telemetry the server wrote, from SQLite and from PostgreSQL alike
(``mltrail monitor`` without a model)."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest

from mltrail.cli import main
from mltrail.monitor.summary import summarize
from mltrail.telemetry import open_store, read_window
from tests.telemetry.helpers import window_records


def _write(uri: str) -> None:
    with closing(open_store(uri)) as store:
        store.write(window_records())


def _check(store: str) -> None:
    summary = summarize(read_window(store))
    assert summary["predictions"] == 10 and summary["from"] == 1000.0 and summary["to"] == 1009.0
    assert summary["class_mix"] == {"0": 0.4, "1": 0.6}
    assert summary["confidence"]["mean"] == pytest.approx(0.725)
    assert summary["inference_ms"]["p50"] == pytest.approx(4.5)
    assert summary["inputs"] == {"chars": pytest.approx(45.0), "oov_rate": pytest.approx(0.1)}
    # p0 right (1), p1 right after its correction (1), p7 wrong (predicted 0, truly 1)
    assert summary["feedback"] == {
        "labelled": 3,
        "accuracy": pytest.approx(2 / 3),
        "out_of_range": None,  # no class count given: not checked
    }
    recent = summarize(read_window(store, since=1005.0, limit=3))
    assert recent["predictions"] == 3 and recent["from"] == 1007.0


def test_the_monitor_summarizes_the_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "telemetry.db")
    _write(db)
    _check(db)
    _check(f"sqlite:///{db}")
    assert main(["monitor", "--store", db, "--summary-out", str(tmp_path / "s.json")]) == 0
    written = json.loads((tmp_path / "s.json").read_text())
    assert written == summarize(read_window(db))
    text = capsys.readouterr().out  # a summary for a person by default
    assert text.startswith("10 predictions, 1970-01-01 00:16:40 to 1970-01-01 00:16:49 UTC\n")
    assert "class mix   0 40.0%, 1 60.0%" in text
    assert "feedback    3 labelled, live accuracy 0.667" in text
    assert main(["monitor", "--store", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == written  # --json: all of it, on stdout
    assert main(["monitor", "--store", db, "--minutes", "1"]) == 0
    assert capsys.readouterr().out == "no predictions in the window\n"


def test_the_monitor_reads_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --store: $MLTRAIL_TELEMETRY_DSN, else telemetry.db where the command runs."""
    from mltrail.telemetry import DEFAULT_STORE, STORE_ENV

    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    _write(str(tmp_path / DEFAULT_STORE))
    assert main(["monitor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"] == 10
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "nothing.db"))
    assert main(["monitor"]) != 0
    assert "no telemetry store at" in capsys.readouterr().err


def test_the_monitor_summarizes_the_shared_postgres_store(postgres_dsn: str) -> None:
    _write(postgres_dsn)
    _check(postgres_dsn)
