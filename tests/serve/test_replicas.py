"""Two server replicas writing telemetry to one PostgreSQL: the counts add up exactly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.serve.conftest import start_server

psycopg = pytest.importorskip("psycopg")


def test_two_replicas_share_one_telemetry_store(
    model_dirs: dict[str, Path], tmp_path: Path, postgres_dsn: str
) -> None:
    replicas = [
        start_server(tmp_path / f"replica-{i}", model_dirs, telemetry={
            "sinks": ["postgres"], "postgres_dsn": postgres_dsn,
            "spill_dir": str(tmp_path / f"spill-{i}")})
        for i in range(2)
    ]  # fmt: skip
    answered = [0, 0]
    first: dict[int, str] = {}

    def traffic(i: int) -> None:
        with replicas[i].client() as c:
            for n in range(150):
                r = c.post("/predict/text", json={"texts": ["good film", f"review {n}"]})
                assert r.status_code == 200, r.text
                answered[i] += len(r.json()["predictions"])
                first.setdefault(i, r.json()["predictions"][0]["prediction_id"])

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)  # both writers flush every 0.2 s
    with replicas[0].client() as c:  # replica 1's prediction: only in the shared store
        r = c.post("/feedback", json={"prediction_id": first[1], "label": 1})
    assert r.status_code == 200, r.text
    for replica in replicas:
        replica.stop()
    with psycopg.connect(postgres_dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
        by_version = conn.execute(
            "SELECT count(DISTINCT prediction_id) FROM predictions"
        ).fetchone()
        feedback = conn.execute("SELECT count(*) FROM feedback").fetchone()[0]
    assert answered == [300, 300]
    assert stored == sum(answered) == by_version[0]
    assert feedback == 1
