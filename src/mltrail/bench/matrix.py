"""The tracking comparison matrix: task x tracking condition x repetition, a fresh process each.

Conditions: mltrail's tracking layer with each tracker spec (``none``, ``mlflow``, ``wandb``,
``mlflow,wandb``) and the paper's inline way (``paper mlflow``, ``paper wandb``, see
:mod:`mltrail.bench.paper_style`). The order of the conditions rotates every repetition, so
slow drift on a noisy machine hits all of them alike.

Resumable: each finished cell is written to ``<work>/cells/<fingerprint>/<cell>.json`` and
skipped on the next run. The fingerprint covers everything that changes what a cell measures
(data sizes, training params, mltrail's version), so cells of another setting are never mixed.
Each cell waits for its run's export (and W&B's service) to finish before the next starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mltrail.config import BenchParams, Params
from mltrail.contracts.layout import METRICS_FILE, PROFILE_FILE
from mltrail.contracts.manifest import Manifest
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_write_text, dumps_json, write_json
from mltrail.tracking.journal import pid_alive
from mltrail.tracking.run import wait_for_export

PAPER = "paper"
MLTRAIL = "mltrail"


@dataclass(frozen=True)
class Cell:
    task: str
    way: str  # mltrail | paper
    tracker: str  # a tracker spec: none, mlflow, wandb, mlflow,wandb
    rep: int

    @property
    def condition(self) -> str:
        label = self.tracker.replace(",", "+")
        return f"paper {label}" if self.way == PAPER else label

    @property
    def key(self) -> str:
        return f"{self.task}-{self.condition.replace(' ', '-')}-{self.rep}"


def conditions(bench: BenchParams) -> list[tuple[str, str]]:
    return [(MLTRAIL, t) for t in bench.trackers] + [(PAPER, t) for t in bench.paper_style]


def plan(bench: BenchParams) -> list[Cell]:
    """Every cell, in the order they run: repetition by repetition, conditions rotating."""
    conds = conditions(bench)
    cells = []
    for rep in range(1, bench.repeats + 1):
        shift = (rep - 1) % len(conds)
        for task in bench.tasks:
            for way, tracker in conds[shift:] + conds[:shift]:
                cells.append(Cell(task, way, tracker, rep))
    return cells


def _digest(what: object) -> str:
    return hashlib.sha256(dumps_json(what).encode()).hexdigest()[:12]


def data_fingerprint(params: Params, bench: BenchParams) -> str:
    """What the prepared data depends on: sources and sizes."""
    return _digest(
        {
            "sizes": [bench.text_rows, bench.cifar10_train_size, bench.cifar10_test_size],
            "text": params.text.model_dump(mode="json"),
            "cifar10": params.cifar10.model_dump(mode="json") if params.cifar10 else None,
        }
    )


def code_digest() -> str:
    """mltrail's own source: a changed tracking layer must not reuse old cells."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fingerprint(params: Params, bench: BenchParams) -> str:
    """What a cell's measurement depends on: data, training params, mltrail's code."""
    return _digest(
        {
            "data": data_fingerprint(params, bench),
            "train_text": params.train_text.model_dump(mode="json"),
            "train_cifar10": params.train_cifar10.model_dump(mode="json"),
            "code": code_digest(),
        }
    )


class Matrix:
    """Runs the cells of one setting in ``work`` (data, stores, journals, cell results)."""

    def __init__(self, params: Params, bench: BenchParams, work: Path) -> None:
        # The cells run in fresh processes with ``work`` as their working directory: they get
        # these params as one file, every path in it already absolute (load_params resolved
        # them against the folder `mltrail bench` ran in) and the user's --set overrides
        # already applied, so nothing is resolved again in another folder. Feedback batches
        # stay out: the benchmark measures tracking on the dataset, the same on every clone.
        self.params = params.model_copy(
            update={
                "text": params.text.model_copy(update={"feedback_dir": None}),
                "cifar10": params.cifar10
                and params.cifar10.model_copy(update={"feedback_dir": None}),
            }
        )
        self.bench = bench
        self.work = work.resolve()
        self.params_file = self.work / "params.yaml"
        self.fingerprint = fingerprint(self.params, bench)
        self.cells_dir = self.work / "cells" / self.fingerprint
        self.bin = Path(sys.executable).parent

    # -- what every cell shares -------------------------------------------------------------

    def overrides(self) -> list[str]:
        """Those that keep every store inside ``work``."""
        return [
            f"tracking.mlflow_uri=sqlite:///{self.work / 'mlflow.db'}",
            f"tracking.wandb_dir={self.work}",
            f"tracking.journal_dir={self.work / 'journal'}",
            "tracking.experiment=bench",
        ]

    def data_dir(self, task: str) -> Path:
        return self.work / "data" / data_fingerprint(self.params, self.bench) / task

    def prepare(self, task: str) -> Path:
        """The task's data at the bench's size (prepared once per setting)."""
        out = self.data_dir(task)
        if (out / PROFILE_FILE).is_file():
            return out
        if task == "text":
            sizes = [f"text.sample_rows={_yaml(self.bench.text_rows)}"]
        else:
            sizes = [
                f"cifar10.train_size={_yaml(self.bench.cifar10_train_size)}",
                f"cifar10.test_size={_yaml(self.bench.cifar10_test_size)}",
            ]
        args = ["prepare", task, "--out", str(out), "--no-progress"]
        args += ["--download-dir", str(self.work / "raw")]
        self._call([str(self.bin / "mltrail"), *args, *self._params_args(sizes)])
        return out

    def _params_args(self, extra: list[str] = ()) -> list[str]:  # type: ignore[assignment]
        args = ["--params", str(self.params_file)]
        for item in [*self.overrides(), *extra]:
            args += ["--set", item]
        return args

    def _call(self, argv: list[str]) -> tuple[float, float]:
        started, wall, _ = run_timed(
            argv, self.work, hint="the cells finished so far are kept; fix the cause and run again"
        )
        return started, wall

    # -- cells ------------------------------------------------------------------------------

    def cell_path(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.key}.json"

    def pending(self) -> list[Cell]:
        return [c for c in plan(self.bench) if not self.cell_path(c).is_file()]

    def run(self, on_cell: Callable[[Cell, dict[str, Any]], None] | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        params = yaml.safe_dump(self.params.model_dump(mode="json"), sort_keys=False)
        atomic_write_text(self.params_file, params)
        for cell in self.pending():
            result = self.run_cell(cell)
            write_json(self.cell_path(cell), result)
            if on_cell is not None:
                on_cell(cell, result)

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        data = self.prepare(cell.task)
        out = self.work / "out" / self.fingerprint / cell.key
        if cell.way == PAPER:
            argv = [
                str(self.bin / "python"),
                "-m",
                "mltrail.bench.paper_style",
                cell.task,
                cell.tracker,
                str(self.params_file),
                str(data),
                str(out),
                cell.key,
                *self.overrides(),
            ]
        else:
            argv = [
                str(self.bin / "mltrail"),
                "train",
                cell.task,
                "--tracker",
                cell.tracker,
                "--data",
                str(data),
                "--out",
                str(out),
                *self._params_args(),
            ]
            if cell.task == "cifar10":
                argv.append("--no-progress")
        started, wall = self._call(argv)
        metrics = json.loads((out / METRICS_FILE).read_text())
        result: dict[str, Any] = {"cell": asdict(cell), "condition": cell.condition}
        result |= {"wall_s": wall, "metrics": metrics, "tool_runtime_s": {}, "tool_runs": {}}
        if cell.way == PAPER:
            result["complete_s"] = wall  # inline: complete when the process ends
            wait_quiet(None)
            where = json.loads((out / "run.json").read_text())
            result["tool_runs"] = {cell.tracker: where}
            result["tool_runtime_s"] = _tool_runtimes(result["tool_runs"])
        elif cell.tracker != "none":
            run_dir = _run_dir(out)
            states = wait_for_export(run_dir, [b for b in cell.tracker.split(",") if b], 600)
            wait_quiet(run_dir)
            result["export"] = {k: v["status"] for k, v in states.items()}
            if any(s["status"] != "done" for s in states.values()):
                raise MltrailError(f"the export of {run_dir} did not finish: {states}")
            result["complete_s"] = max(s["exported_at"] for s in states.values()) - started
            result["tool_runs"] = {"journal": str(run_dir), **states}
            result["tool_runtime_s"] = _tool_runtimes(states)
        else:
            result["complete_s"] = wall
        return result

    def results(self) -> list[dict[str, Any]]:
        """The stored results of this setting's cells, in plan order (missing ones skipped)."""
        found = []
        for cell in plan(self.bench):
            path = self.cell_path(cell)
            if path.is_file():
                found.append(json.loads(path.read_text()))
        return found


def run_timed(argv: list[str], cwd: Path, hint: str | None = None) -> tuple[float, float, str]:
    """Run ``argv`` in a fresh process; (start epoch time, wall seconds, output)."""
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "WANDB_SILENT": "true"}
    started = time.time()
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise MltrailError(
            f"benchmark command failed ({done.returncode}): {' '.join(argv)}\n"
            f"{done.stdout.strip()[-2000:]}\n{done.stderr.strip()[-2000:]}",
            hint=hint,
        )
    return started, wall, done.stdout + done.stderr


def _yaml(value: int | None) -> str:
    return "null" if value is None else str(value)


def _run_dir(out: Path) -> Path:
    journal = Manifest.read(out).tracking.journal
    if journal is None:
        raise MltrailError(f"{out}'s manifest names no run journal: was it trained untracked?")
    return Path(journal)


def _tool_runtimes(runs: dict[str, Any]) -> dict[str, float]:
    """Each tool's recorded runtime of its run (``runs``: tool -> where the run is)."""
    from mltrail.bench.tool_runtime import mlflow_runtime_s, wandb_runtime_s

    found = {}
    if "mlflow" in runs:
        found["mlflow"] = mlflow_runtime_s(runs["mlflow"]["tracking_uri"], runs["mlflow"]["run_id"])
    if "wandb" in runs:
        found["wandb"] = wandb_runtime_s(Path(runs["wandb"]["run_dir"]))
    return found


def wait_quiet(run_dir: Path | None = None, timeout_s: float = 120) -> None:
    """Wait until the run's exporter, and any W&B service (``wandb-core``) whose owner has
    exited, are gone, so one cell's leftovers do not slow the next (Linux /proc; elsewhere, no
    wait). A ``wandb-core`` serving a process that still runs is not the cell's and is left
    alone (a W&B service lives as long as the process that started it)."""
    deadline = time.monotonic() + timeout_s
    mark = str(run_dir).encode() if run_dir else None
    me = str(os.getpid())
    while time.monotonic() < deadline:
        busy = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            if cmdline.parent.name == me:
                continue
            with contextlib.suppress(OSError):
                args = cmdline.read_bytes().split(b"\0")
                if mark is not None and any(mark in a for a in args):
                    busy = True
                elif args and args[0].endswith(b"wandb-core") and b"--pid" in args:
                    owner = args[args.index(b"--pid") + 1]
                    busy = busy or (owner.isdigit() and not pid_alive(int(owner)))
        if not busy:
            return
        time.sleep(0.1)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot (Linux /proc/stat), or None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user .. steal


def wait_idle_cpu(max_busy: float = 0.15, window_s: float = 0.5, timeout_s: float = 30) -> bool:
    """Wait until the machine's CPUs were at most ``max_busy`` busy over ``window_s``; False
    when ``timeout_s`` passed first (or /proc/stat is not there).

    :func:`wait_quiet` waits for the processes a cell is known to leave; this catches the rest
    (an interpreter's atexit work, a database's checkpoint, a child started by a tool): on a
    2-core machine anything still running when the next cell starts is charged to that cell.
    Each cell then starts from the same quiet machine, as a user's single training would.
    """
    deadline = time.monotonic() + timeout_s
    before = _cpu_times()
    while before is not None and time.monotonic() < deadline:
        time.sleep(window_s)
        after = _cpu_times()
        if after is None:
            return False
        idle, total = after[0] - before[0], after[1] - before[1]
        if total > 0 and 1 - idle / total <= max_busy:
            return True
        before = after
    return False


def run_bench(
    params: Params,
    bench: BenchParams,
    out: Path,
    work: Path,
    command: str,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the cells not yet done, then write ``out/benchmark.json`` and the report."""
    from tqdm import tqdm

    from mltrail.bench.machine import machine
    from mltrail.bench.report import write_report

    matrix = Matrix(params, bench, work)
    todo = matrix.pending()
    total = len(plan(bench))
    with tqdm(total=total, initial=total - len(todo), desc="bench", disable=not progress) as bar:

        def done(cell: Cell, result: dict[str, Any]) -> None:
            bar.set_postfix_str(f"{cell.key}: {result['wall_s']:.1f} s")
            bar.update()

        matrix.run(done)
    results = {
        "meta": {
            "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine(),
            "repeats": bench.repeats,
            "sizes": {
                "IMDB rows": bench.text_rows or "all",
                "CIFAR-10 train": bench.cifar10_train_size or "all 50,000",
                "CIFAR-10 test": bench.cifar10_test_size or "all 10,000",
                "CNN epochs": params.train_cifar10.epochs,
                "CNN recipe": params.train_cifar10.recipe,
            },
            "fingerprint": matrix.fingerprint,
        },
        "cells": matrix.results(),
    }
    write_json(out / "benchmark.json", results)
    # Rendered from the file, as --report-only does, so both give the same bytes.
    stored: dict[str, Any] = json.loads((out / "benchmark.json").read_text())
    write_report(stored, out)
    return stored


def rerender(out: Path) -> list[Path]:
    """Render the report again from ``out/benchmark.json``, running nothing."""
    from mltrail.bench.report import write_report

    path = out / "benchmark.json"
    if not path.is_file():
        raise MltrailError(f"{path} does not exist", hint="run `mltrail bench` first")
    return write_report(json.loads(path.read_text()), out)
