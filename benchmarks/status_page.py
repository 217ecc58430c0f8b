"""The status page on a store of a million predictions: how long ``GET /status`` takes.

    MLTRAIL_DATA_MIRROR=../shared/datasets python benchmarks/status_page.py [--rows 1000000]

A text model is trained on an IMDB sample; a telemetry store (SQLite, then PostgreSQL when
``--postgres DSN`` names a server: a fresh database is made there and dropped after) is
filled with ``--rows`` predictions of the endpoint, spread over the last 24 hours and three
model versions (the served one last), written through the store's own ``write`` in batches.
Then a real ``mltrail serve`` on that store answers ``GET /status`` (the page's default 24
hours: every row is in the period) ``--requests`` times, one at a time; the median and the
slowest are reported, with the store's fill time. Writes benchmarks/results/status_page.md
and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    BIN,
    REPO,
    free_port,
    fresh_dir,
    machine,
    mltrail,
    prepare_text_sample,
    process,
)

from mltrail.contracts.manifest import Manifest
from mltrail.telemetry import Prediction, open_store

BATCH = 50_000
KEY = "bench-key"


def fill(uri: str, rows: int, versions: list[str], seed: int = 0) -> float:
    """``rows`` predictions over the last 24 h, a third per version (the last is newest);
    returns the seconds the writes took."""
    rng = np.random.default_rng(seed)
    now = time.time()
    start = now - 24 * 3600
    started = time.perf_counter()
    with closing(open_store(uri)) as store:
        for first in range(0, rows, BATCH):
            n = min(BATCH, rows - first)
            index = np.arange(first, first + n)
            times = start + (now - start) * index / rows
            latency = rng.lognormal(np.log(1.2), 0.5, n)
            confidence = rng.uniform(0.5, 1.0, n)
            label = rng.integers(0, 2, n)
            batch = [
                Prediction(
                    f"b{i}",
                    float(times[j]),
                    "/predict/text",
                    versions[min(int(i) * len(versions) // rows, len(versions) - 1)],
                    int(label[j]),
                    ("neg", "pos")[int(label[j])],
                    float(confidence[j]),
                    float(latency[j]),
                    {"chars": 800.0, "tokens": 170.0, "oov_rate": 0.03},
                )
                for j, i in enumerate(index)
            ]
            store.write(batch)
    return time.perf_counter() - started


def time_page(
    work: Path, model: Path, telemetry: dict[str, Any], requests: int
) -> dict[str, list[float]]:
    """Seconds per ``GET /status`` (24 hours) and ``GET /status?hours=1``."""
    port = free_port()
    settings = {"text_model": str(model), "port": port, "alias_poll_s": 0,
                "telemetry": telemetry}  # fmt: skip
    (work / "serve.yaml").write_text(yaml.safe_dump(settings))
    env = os.environ | {"MLTRAIL_API_KEY": KEY}
    url = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "mltrail"), "serve", "--settings", str(work / "serve.yaml")]
    with process(cmd, work / "serve.log", env, ready=url + "/ready"):
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            seconds: dict[str, list[float]] = {"24h": [], "1h": [], "first_24h": [], "first_1h": []}
            # The first view of each period reads every row of it (nothing kept yet); later
            # views read the buckets still open and take the rest from memory
            # (mltrail.telemetry.bucket_cache).
            for period, hours in (("first_24h", 24), ("first_1h", 1)):
                started = time.perf_counter()
                client.get("/status", params={"hours": hours}).raise_for_status()
                seconds[period].append(time.perf_counter() - started)
            for _ in range(requests):
                for period, hours in (("24h", 24), ("1h", 1)):
                    started = time.perf_counter()
                    r = client.get("/status", params={"hours": hours})
                    seconds[period].append(time.perf_counter() - started)
                    r.raise_for_status()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--postgres", help="a PostgreSQL server's DSN (a database is made there)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-status"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    work = fresh_dir(args.work)
    params = REPO / "params.yaml"
    data, model = prepare_text_sample(work, 2000, params), work / "model"
    mltrail(["train", "text", "--tracker", "none", "--params", str(params), "--data", str(data),
             "--out", str(model)], work)  # fmt: skip
    served = Manifest.read(model).model_version
    versions = ["train_text_baseline@aaaaaaaaaaaa", "train_text_baseline@bbbbbbbbbbbb", served]
    results: dict[str, Any] = {"rows": args.rows, "requests": args.requests, "stores": {}}

    stores: list[tuple[str, str, dict[str, Any], Any]] = [
        ("sqlite", str(work / "telemetry.db"),
         {"sinks": ["sqlite"], "sqlite_path": str(work / "telemetry.db")}, None),
    ]  # fmt: skip
    if args.postgres:
        import psycopg

        name = f"mltrail_bench_status_{os.getpid()}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        dsn = args.postgres.rsplit("/", 1)[0] + f"/{name}"
        stores.append(("postgres", dsn, {"sinks": ["postgres"], "postgres_dsn": dsn}, name))
    try:
        for kind, uri, telemetry, _ in stores:
            fill_s = fill(uri, args.rows, versions)
            seconds = time_page(work, model, telemetry, args.requests)
            results["stores"][kind] = {"fill_s": round(fill_s, 1)} | {
                f"{period}_{name}": value
                for period, times in seconds.items()
                for name, value in (
                    ("median_ms", round(1000 * statistics.median(times), 1)),
                    ("max_ms", round(1000 * max(times), 1)),
                    ("ms", [round(1000 * t, 1) for t in times]),
                )
            }
            print(kind, results["stores"][kind], flush=True)
    finally:
        for _, _, _, database in stores:
            if database is not None:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {database}")
    results["machine"] = machine()
    results["load_before"] = load_before
    results["load_after"] = os.getloadavg()
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    out = REPO / "benchmarks" / "results"
    (out / "status_page.json").write_text(json.dumps(results, indent=2) + "\n")
    command = f"python benchmarks/status_page.py --rows {args.rows} --requests {args.requests}"
    if args.postgres:
        command += " --postgres postgresql://postgres@127.0.0.1:5432/postgres"
    rows = "\n".join(
        f"| {kind} | {r['fill_s']} | {r['first_24h_median_ms']} | {r['24h_median_ms']} | "
        f"{r['24h_max_ms']} | {r['first_1h_median_ms']} | {r['1h_median_ms']} | {r['1h_max_ms']} |"
        for kind, r in results["stores"].items()
    )
    m = results["machine"]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = f"""# The status page on a million predictions

`{command}` on {m.get("cpu", "?")}, {m.get("cores", "?")} cores, {stamp}. {results["rows"]:,}
predictions of /predict/text over the last 24 hours (three model versions) in the store; a
real `mltrail serve` answers `GET /status` (24 hours: every row in the period) and
`GET /status?hours=1` (the last hour: a twenty-fourth of them) {results["requests"]} times each,
alternating, one at a time, after a first view of each. The first view of a period
aggregates all of it in SQL; later views read only the time buckets still open (and those
kept longer than 10 minutes) and take the closed ones from memory
(`mltrail.telemetry.bucket_cache`).

| store | fill s | 24 h: first ms | median ms | slowest ms | 1 h: first ms | median ms | max ms |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Load average (1, 5, 15 min) before: {", ".join(f"{v:.2f}" for v in results["load_before"])};
after: {", ".join(f"{v:.2f}" for v in results["load_after"])} (2 cores: a load under 2 leaves
a core free; higher, the times are an upper bound).
"""
    (out / "status_page.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
