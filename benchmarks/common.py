"""Helpers the benchmarks share: running mltrail in a fresh process, timing, the machine."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from mltrail.bench.machine import machine  # noqa: F401 (re-exported for the benchmarks)
from mltrail.bench.matrix import run_timed, wait_idle_cpu, wait_quiet  # noqa: F401
from mltrail.tracking.run import wait_for_export

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# What the serving benchmarks send: one review per request, posted by wrk with LUA.
REVIEW = (
    "I went in expecting little, but the acting was superb and the story kept me guessing "
    "until the very end. One of the better films I have seen this year."
)
LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run ``argv`` in a fresh process; return (start epoch time, wall seconds, output)."""
    return run_timed(argv, cwd)


def mltrail(args: list[str], cwd: Path) -> tuple[float, float, str]:
    return run([str(BIN / "mltrail"), *args], cwd)


def tracking_overrides(work: Path) -> list[str]:
    """``--set`` arguments keeping a benchmark's MLflow store, W&B files, journals in ``work``."""
    return [
        "--set", f"tracking.mlflow_uri=sqlite:///{work / 'mlflow.db'}",
        "--set", f"tracking.wandb_dir={work}",
        "--set", f"tracking.journal_dir={work / 'journal'}",
    ]  # fmt: skip


def newest_run(journal_dir: Path) -> Path:
    journals = [p / "journal.jsonl" for p in journal_dir.iterdir()]
    return max((j for j in journals if j.is_file()), key=lambda j: j.stat().st_mtime).parent


def wait_exported(run_dir: Path, backends: list[str], timeout_s: float = 300) -> dict[str, Any]:
    """Each backend's export state of ``run_dir``, once every one is written."""
    return wait_for_export(run_dir, backends, timeout_s)


def median(values: list[float]) -> float:
    return statistics.median(values)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def copy_project(source: Path, target: Path) -> Path:
    """The files git tracks in ``source``, copied into a fresh git repository ``target``
    (without dvc.lock: the copy runs its own pipeline)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=source, capture_output=True, check=True)
    if target.exists():
        shutil.rmtree(target)
    for rel in filter(None, listed.stdout.decode().split("\0")):
        if (source / rel).is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, target / rel)
    (target / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    return target


def set_params(project: Path, sections: dict[str, dict[str, Any]]) -> None:
    """Update sections of ``project``'s params.yaml."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk's ``--latency`` report: throughput, counts, errors, p50 and p99 in ms."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    pct = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"\s+(50|99)%\s+([\d.]+\w+)", out)}
    return {
        "requests_per_s": rps,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def prepare_text_sample(work: Path, rows: int, params: Path = REPO / "params.yaml") -> Path:
    """``mltrail prepare text`` of an IMDB sample of ``rows`` rows into ``work/text``."""
    data = work / "text"
    mltrail(
        [
            "prepare", "text", "--params", str(params), "--out", str(data), "--no-progress",
            "--download-dir", str(work / "raw"), "--set", f"text.sample_rows={rows}",
        ],
        work,
    )  # fmt: skip
    return data


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url}")


@contextmanager
def process(
    argv: list[str],
    log: Path,
    env: dict[str, str],
    ready: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in its own process group, stopped with SIGTERM (then SIGKILL) at the end."""
    proc = subprocess.Popen(
        argv,
        cwd=log.parent,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if ready is not None:
            _wait_http(ready, proc, f"{Path(argv[0]).name} ({log.name})")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
