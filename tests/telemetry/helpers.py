"""Records, settings and a sink that fails on demand, for the telemetry tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mltrail.telemetry import Feedback, Prediction, Record, TelemetrySettings


def prediction(i: int, t: float | None = None) -> Prediction:
    return Prediction(
        f"p{i}",
        time.time() if t is None else t,
        "/predict/text",
        "m@1",
        i % 2,
        str(i % 2),
        0.9,
        1.0,
        {"chars": 10.0},
    )


def window_records() -> list[Prediction | Feedback]:
    """10 predictions 1 s apart (6 of class "1", latency i ms) and feedback for 3 of them,
    p1's corrected (the latest label counts)."""
    records: list[Prediction | Feedback] = []
    for i in range(10):
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
    ]
    return records


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


def settings(tmp_path: Path, **kw: object) -> TelemetrySettings:
    values = {
        "sqlite_path": str(tmp_path / "t.db"),
        "spill_dir": str(tmp_path / "spill"),
        "flush_interval_s": 0.05,
    } | kw
    return TelemetrySettings.model_validate(values)


def wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
