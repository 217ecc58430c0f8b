"""Replicas behind haproxy: throughput and p99 through the balancer with 1, 2 and 3 replicas
against one replica asked directly, and the rollout time of a promotion to every replica.

The team topology of docs/team.md, on loopback: MLflow's tracking server on PostgreSQL with its
artifacts in S3 (moto's S3 server standing in for MinIO/AWS), two text models (TF-IDF + logistic
regression, IMDB sample, C=1 and C=0.05) trained against it, the first promoted with
``mltrail promote`` (registry alias ``models:/mltrail-text@production``), three ``mltrail
serve`` replicas following that alias with their telemetry in one PostgreSQL database, and
``scripts/balance`` (Debian's haproxy) in front of the first 1, 2 or 3 of them.

Load: ``wrk`` (Debian's) posting one review per request at ``--connections`` for ``--seconds``,
first to replica 1 directly (the baseline), then through the balancer. Each replica's CPU
seconds during each run come from /proc (utime + stime of the process and its children), as do
haproxy's; wrk's from its rusage. On a 2-core machine, where wrk, haproxy and the replicas share
the cores, more replicas cannot add throughput: the figures say what the balancer costs.

Rollout: under wrk load through the balancer of 3 replicas, ``mltrail promote`` of the other
model, ``--promotions`` times (alternating); for each, the seconds from the promotion (the
command's start, and its return: the alias has moved) until every replica's ``/version`` shows
the new model, polled every 50 ms. The replicas poll the alias every ``--alias-poll`` seconds
(``MLTRAIL_ALIAS_POLL_S``; the default setting is 5 s).

    python benchmarks/balancer.py [--seconds 15] [--connections 16] [--rows 5000]

Needs wrk and haproxy (apt-get install wrk haproxy), PostgreSQL at 127.0.0.1:5432
($MLTRAIL_TEST_POSTGRES for another server), moto[server] and the IMDB file in
$MLTRAIL_DATA_MIRROR (or the download). Writes benchmarks/results/balancer.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
)

POSTGRES_ADMIN = os.environ.get(
    "MLTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ALIAS_URI = "models:/mltrail-text@production"
# moto accepts any keys; dummy ones, so that nothing can reach a real AWS account.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
TICK = os.sysconf("SC_CLK_TCK")


# ---- processes ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every process below it (threads included), from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:  # fields from state on: utime and stime are the 12th and 13th
            total += int(stats[p][11]) + int(stats[p][12])
        todo.extend(children.get(p, []))
    return total / TICK


@contextmanager
def postgres_database(prefix: str, create: bool) -> Iterator[str]:
    """The DSN of a fresh database on the PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if create:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---- wrk ---------------------------------------------------------------------------------------


def wrk(url: str, seconds: float, connections: int, work: Path) -> subprocess.Popen[str]:
    script = work / "post.lua"
    script.write_text(LUA.format(body=json.dumps({"text": REVIEW})))
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url + "/predict/text",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wrk_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{out}")
    return parse_wrk(out)


def measured_load(
    url: str, args: argparse.Namespace, work: Path, replicas: list[Any], balancer: Any = None
) -> dict[str, Any]:
    """wrk against ``url``, with the CPU seconds each process spent meanwhile."""
    before = [cpu_seconds(r.pid) for r in replicas]
    lb_before = cpu_seconds(balancer.pid) if balancer is not None else 0.0
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Other work on the machine shows here (the cores are shared): the 1-minute load average.
    load_before = os.getloadavg()[0]
    result = wrk_result(wrk(url, args.seconds, args.connections, work))
    result["loadavg_1m_before"] = round(load_before, 2)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["replica_cpu_s"] = [
        round(cpu_seconds(r.pid) - b, 2) for r, b in zip(replicas, before, strict=True)
    ]
    if balancer is not None:
        result["haproxy_cpu_s"] = round(cpu_seconds(balancer.pid) - lb_before, 2)
    result["wrk_cpu_s"] = round(after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime, 2)
    return result


# ---- the topology ------------------------------------------------------------------------------


@contextmanager
def balancer(replicas: list[str], work: Path, env: dict[str, str]) -> Iterator[Any]:
    """scripts/balance in front of ``replicas`` (ports), once haproxy sees them all UP."""
    port = free_port()
    lb_env = env | {"MLTRAIL_LB_DIR": str(work / f"lb-{port}")}
    argv = [
        str(REPO / "scripts" / "balance"),
        "--bind",
        f"127.0.0.1:{port}",
        *(f"127.0.0.1:{p}" for p in replicas),
    ]
    with process(argv, work / f"haproxy-{port}.log", lb_env) as proc:
        deadline = time.monotonic() + 30
        while True:
            status = subprocess.run(
                [str(REPO / "scripts" / "balance"), "status"],
                env=lb_env,
                capture_output=True,
                text=True,
            ).stdout
            if status.count(" UP") >= len(replicas):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"haproxy did not see {len(replicas)} replicas UP: {status}")
            time.sleep(0.3)
        proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        yield proc


def served(url: str) -> str | None:
    try:
        return str(httpx.get(url + "/version", timeout=2).json()["models"]["text"]["version"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def promote(model: Path, work: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [
            str(BIN / "mltrail"),
            "promote",
            str(model),
            "--params",
            str(REPO / "params.yaml"),
            "--set",
            f"retrain.releases_dir={work / 'releases'}",
            "--set",
            f"retrain.pointer_file={work / 'releases' / 'serving.json'}",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mltrail promote failed:\n{done.stdout}{done.stderr}")


def rollouts(
    models: list[Path],
    versions: list[str],
    urls: list[str],
    lb_url: str,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
) -> dict[str, Any]:
    """``args.promotions`` promotions under wrk load through the balancer: the seconds until
    every replica serves the promoted model, and what wrk saw meanwhile."""
    load = wrk(lb_url, 3600, args.connections, work)
    times: list[dict[str, float]] = []
    try:
        time.sleep(2)
        for k in range(args.promotions):
            which = (k + 1) % 2  # model 1 serves at first: promote 2, then 1, ...
            started = time.monotonic()
            promote(models[which], work, env)
            moved = time.monotonic()
            pending = set(urls)
            while pending and time.monotonic() < moved + 60:
                pending = {u for u in pending if served(u) != versions[which]}
                time.sleep(0.05)
            if pending:
                raise RuntimeError(f"{sorted(pending)} still serve the old model after 60 s")
            done = time.monotonic()
            times.append(
                {
                    "promote_command_s": round(moved - started, 2),
                    "from_promote_start_s": round(done - started, 2),
                    "from_alias_moved_s": round(done - moved, 2),
                }
            )
            time.sleep(1)
    finally:
        load.send_signal(signal.SIGINT)  # wrk stops and prints what it counted
    return {
        "promotions": times,
        "median_from_alias_moved_s": statistics.median(t["from_alias_moved_s"] for t in times),
        "median_from_promote_start_s": statistics.median(t["from_promote_start_s"] for t in times),
        "load": wrk_result(load),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--promotions", type=int, default=3)
    parser.add_argument("--alias-poll", type=float, default=1.0, help="MLTRAIL_ALIAS_POLL_S")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-balancer"))
    args = parser.parse_args()
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit(f"benchmarks/balancer.py needs {tool}: apt-get install {tool}")
    work = fresh_dir(args.work)
    env = os.environ | AWS_ENV
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        env.pop(var, None)
    with ExitStack() as stack:
        results = topology(stack, args, work, env)
    report(results, args)


def topology(
    stack: ExitStack,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
) -> dict[str, Any]:
    import boto3

    s3_port = free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    stack.enter_context(
        process(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            work / "moto.log",
            env,
            ready=f"{endpoint}/moto-api/",
        )
    )
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket="mltrail")
    store = stack.enter_context(postgres_database("mltrail_bench_mlflow", create=False))
    telemetry = stack.enter_context(postgres_database("mltrail_bench_telemetry", create=True))
    mlflow_port = free_port()
    tracker = f"http://127.0.0.1:{mlflow_port}"
    stack.enter_context(
        process(
            [
                str(BIN / "mltrail"),
                "tracking",
                "server",
                "--backend-store-uri",
                store,
                "--artifacts",
                "s3://mltrail/mlflow",
                "--s3-endpoint-url",
                endpoint,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            work / "tracking.log",
            env,
            ready=f"{tracker}/health",
        )
    )

    params = str(REPO / "params.yaml")
    prepare_text_sample(work, args.rows)
    models = [work / "model-1", work / "model-2"]
    for model, c in zip(models, ("1.0", "0.05"), strict=True):
        mltrail(
            [
                "train",
                "text",
                "--tracker",
                tracker,
                "--params",
                params,
                "--data",
                str(work / "text"),
                "--out",
                str(model),
                "--set",
                f"train_text.C={c}",
                "--set",
                f"tracking.journal_dir={work / 'journal'}",
                "--set",
                "tracking.wait=true",
            ],
            work,
        )
    from mltrail.contracts.manifest import Manifest

    versions = [Manifest.read(m).model_version for m in models]
    promote(models[0], work, env)

    serve_env = env | {"MLFLOW_TRACKING_URI": tracker, "MLTRAIL_ALIAS_POLL_S": str(args.alias_poll)}
    ports, replicas = [], []
    for i in (1, 2, 3):
        port = free_port()
        folder = work / f"r{i}"
        folder.mkdir()
        settings = {
            "text_model": ALIAS_URI,
            "port": port,
            "telemetry": {
                "sinks": ["postgres"],
                "postgres_dsn": telemetry,
                "spill_dir": str(folder / "spill"),
            },
        }
        (folder / "serve.yaml").write_text(yaml.safe_dump(settings))
        argv = [str(BIN / "mltrail"), "serve", "--settings", str(folder / "serve.yaml")]
        ports.append(str(port))
        replicas.append(
            stack.enter_context(
                process(
                    argv, folder / "server.log", serve_env, ready=f"http://127.0.0.1:{port}/ready"
                )
            )
        )
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    if {served(u) for u in urls} != {versions[0]}:
        raise RuntimeError("the replicas do not serve the promoted model")

    loads: dict[str, Any] = {"direct to one replica": measured_load(urls[0], args, work, replicas)}
    for n in (1, 2, 3):
        with balancer(ports[:n], work, env) as lb:
            loads[f"haproxy, {n} replica{'s' * (n > 1)}"] = measured_load(
                lb.url, args, work, replicas, lb
            )
    with balancer(ports, work, env) as lb:
        rollout = rollouts(models, versions, urls, lb.url, args, work, env)
    for proc in replicas:  # drain: every record the replicas hold goes to PostgreSQL
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in replicas:
        proc.wait(timeout=60)
    import psycopg

    with psycopg.connect(telemetry) as conn:
        rows = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]  # type: ignore[index]
    answered = sum(r["requests"] - r["non_2xx"] for r in [*loads.values(), rollout["load"]])
    return {
        "loads": loads,
        "rollout": rollout,
        "versions": versions,
        "telemetry": {"rows": rows, "answered_by_wrk": answered, "wrk_runs": len(loads) + 1},
    }


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    loads = results["loads"]
    base = loads["direct to one replica"]
    ratios = {
        name: {
            "throughput": r["requests_per_s"] / base["requests_per_s"],
            "p99": r["p99_ms"] / base["p99_ms"],
        }
        for name, r in loads.items()
        if name != "direct to one replica"
    }
    result = {
        "benchmark": "balancer",
        "command": f"python benchmarks/balancer.py --seconds {args.seconds} --connections "
        f"{args.connections} --rows {args.rows} --promotions {args.promotions} --alias-poll "
        f"{args.alias_poll}",
        "machine": machine(),
        "results": results,
        "ratios_vs_direct": ratios,
    }
    out = REPO / "benchmarks" / "results"
    (out / "balancer.json").write_text(json.dumps(result, indent=2) + "\n")
    m, rollout, tele = result["machine"], results["rollout"], results["telemetry"]
    lines = [
        "# Replicas behind haproxy: throughput, p99, rollout of a promotion",
        "",
        f"`{result['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['date']}. The team topology on loopback (docs/team.md): MLflow's server on "
        "PostgreSQL with artifacts in S3 (moto), `mltrail serve` replicas following "
        f"`{ALIAS_URI}` with telemetry in one PostgreSQL database, `scripts/balance` (haproxy "
        f"{_haproxy_version()}) in front. wrk posts one review per request at "
        f"{args.connections} connections for {args.seconds} s per row; wrk, haproxy, the "
        "replicas and PostgreSQL share the cores.",
        "",
        "| target | requests/s | p50 ms | p99 ms | failed | vs direct: throughput | p99 | "
        "replica CPU s (r1, r2, r3) | haproxy CPU s | wrk CPU s | load avg before |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in loads.items():
        ratio = ratios.get(name, {"throughput": 1.0, "p99": 1.0})
        lines.append(
            f"| {name} | {r['requests_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['non_2xx'] + r['socket_errors']} | {ratio['throughput']:.2f}x | "
            f"{ratio['p99']:.2f}x | {', '.join(f'{c:.1f}' for c in r['replica_cpu_s'])} | "
            f"{r.get('haproxy_cpu_s', 0):.1f} | {r['wrk_cpu_s']:.1f} | "
            f"{r['loadavg_1m_before']:.1f} |"
        )
    three = loads["haproxy, 3 replicas"]
    busy = sum(three["replica_cpu_s"]) + three.get("haproxy_cpu_s", 0) + three["wrk_cpu_s"]
    promotions = ", ".join(f"{t['from_alias_moved_s']:.2f}" for t in rollout["promotions"])
    lines += [
        "",
        f"- 3 replicas through haproxy: {ratios['haproxy, 3 replicas']['throughput']:.2f}x the "
        f"throughput of one replica asked directly; the processes measured used {busy:.1f} CPU "
        f"s of the {m['cores'] * args.seconds} the {m['cores']} cores had in {args.seconds} s "
        "(the load average says what else ran). Replicas cannot add cores: on this machine "
        "they buy availability (a replica killed or restarting costs no request), not "
        "throughput.",
        f"- Rollout (replicas polling the alias every {args.alias_poll:g} s): from `mltrail "
        "promote` returning (the alias has moved) until all 3 replicas' `/version` show the new "
        f"model: median **{rollout['median_from_alias_moved_s']:.2f} s** ({promotions}); "
        f"from the command's start: median {rollout['median_from_promote_start_s']:.2f} s (the "
        "command itself: "
        f"{statistics.median(t['promote_command_s'] for t in rollout['promotions']):.2f} s). "
        "At the default poll of 5 s, add up to 4 s.",
        f"- Under wrk load through the balancer meanwhile: {rollout['load']['requests']} "
        f"requests, {rollout['load']['non_2xx'] + rollout['load']['socket_errors']} failed, "
        f"{rollout['load']['requests_per_s']:.0f} requests/s, p99 "
        f"{rollout['load']['p99_ms']:.2f} ms.",
        f"- Telemetry rows in PostgreSQL after the replicas drained: {tele['rows']} for "
        f"{tele['answered_by_wrk']} 2xx responses counted by wrk over {tele['wrk_runs']} runs "
        f"(wrk stops counting with up to {args.connections} requests in flight per run, which "
        "the replicas still answer and record).",
    ]
    (out / "balancer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _haproxy_version() -> str:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
    found = re.search(r"version (\S+)", out)
    return found.group(1) if found else "?"


if __name__ == "__main__":
    main()
