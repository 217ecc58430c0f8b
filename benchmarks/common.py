"""Helpers the benchmarks share: running mltrail in a fresh process, timing, the machine."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    libs = {}
    for name in ("mltrail", "scikit-learn", "torch", "mlflow", "wandb", "dvc", "numpy", "pandas"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            libs[name] = importlib.metadata.version(name)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "libraries": libs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run ``argv`` in a fresh process; return (start epoch time, wall seconds, output)."""
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "WANDB_SILENT": "true"}
    started = time.time()
    t0 = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return started, wall, result.stdout + result.stderr


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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {}
        for b in backends:
            path = run_dir / f"export-{b}.json"
            if path.is_file():
                states[b] = json.loads(path.read_text())
        if len(states) == len(backends):
            return states
        time.sleep(0.05)
    raise TimeoutError(f"export of {run_dir} not done in {timeout_s} s")


def wait_quiet(run_dir: Path | None = None, timeout_s: float = 120) -> None:
    """Wait until the run's exporter and any W&B service (``wandb-core``) have exited, so that
    one measurement's leftovers do not slow the next one."""
    deadline = time.monotonic() + timeout_s
    marks = (b"wandb-core", *([str(run_dir).encode()] if run_dir else []))
    while time.monotonic() < deadline:
        busy = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                text = cmdline.read_bytes()
                busy = busy or any(mark in text for mark in marks)
        if not busy:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the exporter of {run_dir} still runs after {timeout_s} s")


def median(values: list[float]) -> float:
    return statistics.median(values)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
