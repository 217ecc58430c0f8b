"""Serving the text model: mltrail's server against MLflow's scoring server, same model, same load.

One text model (TF-IDF + logistic regression, IMDB 5,000-row sample) is trained with
``--tracker mlflow``, so MLflow holds it as a logged model; then, one server at a time on
127.0.0.1 (one process each):

- ``mlflow models serve -m runs:/<id>/model --env-manager local --workers 1``
- ``mltrail serve`` with telemetry on (the SQLite store) and off (``sinks: []``)

Load: ``wrk`` (C, from Debian: ``apt-get install wrk``) posting one review per request, at 16
connections for ``--seconds``; and single-request latency from sequential requests over one
connection. Each server answers the same review. Ratios against MLflow, and telemetry on / off,
are measured in the same run.

    python benchmarks/serving.py [--seconds 20] [--rows 5000]

Needs the IMDB file in $MLTRAIL_DATA_MIRROR (or the download). Writes
benchmarks/results/serving.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BIN,
    LUA,
    REPO,
    REVIEW,
    free_port,
    fresh_dir,
    machine,
    mltrail,
    parse_wrk,
    prepare_text_sample,
    process,
    tracking_overrides,
    wait_exported,
)


def single_latency(url: str, body: dict[str, Any], n: int) -> dict[str, float]:
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(20):  # warm the connection and the model
            client.post(url, json=body).raise_for_status()
        for _ in range(n):
            t0 = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(0.99 * (len(times) - 1))],
        "mean_ms": statistics.fmean(times),
    }


def load(
    url: str, body: dict[str, Any], seconds: int, connections: int, work: Path
) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(LUA.format(body=json.dumps(body)))
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_wrk(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--single", type=int, default=500, help="sequential requests")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-serving"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/serving.py needs wrk: apt-get install wrk")
    work = fresh_dir(args.work)
    params = REPO / "params.yaml"
    data, model = work / "text", work / "model"
    prepare_text_sample(work, args.rows, params)
    mltrail(["train", "text", "--tracker", "mlflow", "--params", str(params), "--data", str(data),
             "--out", str(model), *tracking_overrides(work)], work)  # fmt: skip
    run_dir = Path(json.loads((model / "manifest.json").read_text())["tracking"]["journal"])
    state = wait_exported(run_dir, ["mlflow"])["mlflow"]
    env = os.environ | {"MLFLOW_TRACKING_URI": state["tracking_uri"],
                        "MLFLOW_DISABLE_TELEMETRY": "true",
                        # MLflow's server starts `uvicorn` by name: the venv's must be found.
                        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    results: dict[str, Any] = {}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"runs:/{state['run_id']}/model",
        "--env-manager",
        "local",
        "--workers",
        "1",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    # MLflow's server runs uvicorn in a child process: process() signals the whole group.
    with process(mlflow_cmd, work / "mlflow-serve.log", env, ready=url + "/health"):
        body = {"inputs": [REVIEW]}
        results["mlflow models serve"] = {
            "single": single_latency(url + "/invocations", body, args.single),
            "load": load(url + "/invocations", body, args.seconds, args.connections, work),
        }

    for name, sinks in (("mltrail serve, telemetry on", ["sqlite"]),
                        ("mltrail serve, telemetry off", [])):  # fmt: skip
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        db = work / f"telemetry-{len(sinks)}.db"
        settings = {"text_model": str(model), "port": port,
                    "telemetry": {"sinks": sinks, "sqlite_path": str(db),
                                  "spill_dir": str(work / "spill")}}  # fmt: skip
        (work / "serve.yaml").write_text(yaml.safe_dump(settings))
        cmd = [str(BIN / "mltrail"), "serve", "--settings", str(work / "serve.yaml")]
        with process(cmd, work / f"serve-{len(sinks)}.log", env, ready=url + "/ready"):
            body = {"text": REVIEW}
            results[name] = {
                "single": single_latency(url + "/predict/text", body, args.single),
                "load": load(url + "/predict/text", body, args.seconds, args.connections, work),
            }
        if sinks:  # every successful prediction left exactly one record
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            answered = results[name]["load"]["requests"] - results[name]["load"]["non_2xx"]
            results[name]["telemetry_records"] = stored
            results[name]["answered_requests_incl_single"] = answered + args.single + 20
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    base = results["mlflow models serve"]["load"]
    on = results["mltrail serve, telemetry on"]["load"]
    off = results["mltrail serve, telemetry off"]["load"]
    ratios = {
        "throughput_vs_mlflow": on["requests_per_s"] / base["requests_per_s"],
        "p99_vs_mlflow": on["p99_ms"] / base["p99_ms"],
        "telemetry_on_vs_off": on["requests_per_s"] / off["requests_per_s"],
    }
    result = {
        "benchmark": "serving",
        "command": f"python benchmarks/serving.py --seconds {args.seconds} "
        f"--connections {args.connections} --rows {args.rows}",
        "machine": machine(),
        "results": results,
        "ratios": ratios,
    }
    out = REPO / "benchmarks" / "results"
    (out / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# Serving the text model: mltrail vs MLflow's scoring server",
        "",
        f"`{result['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['date']}. Same model (TF-IDF + logistic regression, IMDB {args.rows}-row sample), "
        f"one server process at a time on 127.0.0.1, wrk at {args.connections} connections for "
        f"{args.seconds} s (the load generator shares the 2 cores); single-request latency "
        f"over {args.single} sequential requests on one connection.",
        "",
        "| server | requests/s | p50 ms | p99 ms | non-2xx | single p50 ms | single p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        load_, single = r["load"], r["single"]
        lines.append(
            f"| {name} | {load_['requests_per_s']:.0f} | {load_['p50_ms']:.2f} | "
            f"{load_['p99_ms']:.2f} | {load_['non_2xx'] + load_['socket_errors']} | "
            f"{single['p50_ms']:.2f} | {single['p99_ms']:.2f} |"
        )
    tele = results["mltrail serve, telemetry on"]
    lines += [
        "",
        f"- Throughput, mltrail (telemetry on) / MLflow: **{ratios['throughput_vs_mlflow']:.2f}x**;"
        f" p99 latency: **{ratios['p99_vs_mlflow']:.2f}x** of MLflow's.",
        f"- Telemetry on / off throughput: **{ratios['telemetry_on_vs_off']:.3f}**.",
        f"- Telemetry records stored: {tele['telemetry_records']} for "
        f"{tele['answered_requests_incl_single']} answered requests (load + single + warm-up; "
        f"wrk stops counting with up to {args.connections} requests in flight, one per "
        "connection, which the server still answers and records).",
    ]
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
