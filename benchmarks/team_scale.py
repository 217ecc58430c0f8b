"""Team scale: runs logged per minute to a shared tracking server, telemetry rows per second
into PostgreSQL, with batching on and off.

- Runs: ``mltrail tracking server`` (MLflow on PostgreSQL, 2 workers) on 127.0.0.1;
  ``--clients`` training processes at a time (``mltrail train text`` on a 2,000-row IMDB
  sample, each waiting for its export) until ``--runs`` runs are complete in the server.
  Rate = complete runs / minutes from the first start to the last completion.
- Telemetry: the server's telemetry writer (``mltrail.telemetry``) into a fresh
  PostgreSQL database, ``--rows`` prediction records, batched (``batch_size`` 1000, one
  statement per batch) and unbatched (``batch_size`` 1, one transaction per record).

    python benchmarks/team_scale.py [--runs 16] [--clients 4] [--rows 20000]

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and the IMDB file in $MLTRAIL_DATA_MIRROR.
Writes benchmarks/results/team_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, REPO, free_port, fresh_dir, machine, mltrail

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database(prefix: str) -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def runs_per_minute(work: Path, data: Path, runs: int, clients: int) -> dict[str, Any]:
    port = free_port()
    db = f"mltrail_bench_mlflow_{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(
        [str(BIN / "mltrail"), "tracking", "server", "--backend-store-uri",
         f"postgresql://postgres@127.0.0.1:5432/{db}", "--artifacts", str(work / "artifacts"),
         "--port", str(port)],
        cwd=work, start_new_session=True, stdout=(work / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        params = REPO / "params.yaml"
        started = time.perf_counter()
        running: list[subprocess.Popen[bytes]] = []
        launched = done = 0
        while done < runs:
            while launched < runs and len(running) < clients:
                running.append(subprocess.Popen(
                    [str(BIN / "mltrail"), "train", "text", "--tracker", uri, "--params",
                     str(params), "--data", str(data), "--out", str(work / f"m{launched}"),
                     "--set", f"tracking.journal_dir={work / 'journal'}",
                     "--set", "tracking.wait=true"],
                    cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))  # fmt: skip
                launched += 1
            for proc in list(running):
                if proc.poll() is not None:
                    if proc.returncode != 0:
                        raise RuntimeError("a training run failed")
                    running.remove(proc)
                    done += 1
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        found = client.search_runs([e.experiment_id for e in client.search_experiments()])
        finished = sum(r.info.status == "FINISHED" for r in found)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        drop_database(db)
    return {
        "runs": runs,
        "clients": clients,
        "finished_in_server": finished,
        "seconds": elapsed,
        "runs_per_minute": runs / elapsed * 60,
    }


def telemetry_rows_per_second(work: Path, rows: int, batch_size: int) -> dict[str, Any]:
    import psycopg

    from mltrail.telemetry import Prediction, Telemetry, TelemetrySettings, open_store

    db = fresh_database("mltrail_bench_telemetry")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
    try:
        sink = open_store(dsn)
        sink.write([])  # schema first: not part of the measurement
        settings = TelemetrySettings(
            batch_size=batch_size, queue_size=rows + 1, spill_dir=str(work / "spill"),
            flush_interval_s=0.05,
        )  # fmt: skip
        telemetry = Telemetry(settings, [sink])
        records = [
            Prediction(uuid.uuid4().hex, time.time(), "/predict/text", "m@1", i % 2, str(i % 2),
                       0.9, 0.5, {"chars": 120.0, "tokens": 25.0, "oov_rate": 0.04})
            for i in range(rows)
        ]  # fmt: skip
        for record in records:  # queued before the writer starts: pure writer throughput
            telemetry.submit(record)
        started = time.perf_counter()
        telemetry.start()
        while telemetry.counters.exported["postgres"] < rows:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        telemetry.close()
        with psycopg.connect(dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    finally:
        drop_database(db)
    return {"rows": rows, "batch_size": batch_size, "stored": stored, "seconds": elapsed,
            "rows_per_second": rows / elapsed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-team"))
    args = parser.parse_args()
    work = fresh_dir(args.work)
    data = work / "text"
    mltrail(["prepare", "text", "--params", str(REPO / "params.yaml"), "--out", str(data),
             "--no-progress", "--download-dir", str(work / "raw"),
             "--set", "text.sample_rows=2000"], work)  # fmt: skip
    result = {
        "benchmark": "team_scale",
        "command": f"python benchmarks/team_scale.py --runs {args.runs} --clients {args.clients} "
        f"--rows {args.rows}",
        "machine": machine(),
        "tracking": runs_per_minute(work, data, args.runs, args.clients),
        "telemetry_batched": telemetry_rows_per_second(work, args.rows, 1000),
        "telemetry_unbatched": telemetry_rows_per_second(work, min(args.rows, 5000), 1),
    }
    out = REPO / "benchmarks" / "results"
    (out / "team_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    m, t = result["machine"], result["tracking"]
    on, off = result["telemetry_batched"], result["telemetry_unbatched"]
    lines = [
        "# Team scale: a shared MLflow server on PostgreSQL, telemetry into PostgreSQL",
        "",
        f"`{result['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['date']}; server, clients and PostgreSQL on the same machine.",
        "",
        "| measurement | result |",
        "| --- | --- |",
        f"| runs complete in the shared server ({t['clients']} training processes at a time, "
        f"IMDB 2,000 rows, each with params, metrics, artifacts, model) | "
        f"{t['runs_per_minute']:.1f} runs/min ({t['finished_in_server']}/{t['runs']} FINISHED in "
        f"{t['seconds']:.1f} s) |",
        f"| telemetry rows/s into PostgreSQL, batched (1,000 per statement) | "
        f"{on['rows_per_second']:,.0f} ({on['stored']:,} rows stored of {on['rows']:,}) |",
        f"| telemetry rows/s into PostgreSQL, unbatched (one transaction per row) | "
        f"{off['rows_per_second']:,.0f} ({off['stored']:,} rows stored of {off['rows']:,}) |",
        "",
        f"Batching: {on['rows_per_second'] / off['rows_per_second']:.0f}x the rows per second.",
    ]
    (out / "team_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
