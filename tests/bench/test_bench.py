"""`mltrail bench` on tiny real data: every cell of every table, tool runtimes read from the
tools' own stores, a report that regenerates without re-running, resuming that skips cells."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mltrail.bench.matrix import Cell, plan
from mltrail.bench.tool_runtime import wandb_inspect
from mltrail.cli import main
from mltrail.config import BenchParams
from tests.conftest import PARAMS, shared_datasets

CONDITIONS = ["none", "mlflow", "wandb", "mlflow+wandb", "paper mlflow", "paper wandb"]


def test_plan_rotates_conditions_every_repetition() -> None:
    bench = BenchParams(tasks=("text",), trackers=("none", "mlflow"), paper_style=("wandb",),
                        repeats=3)  # fmt: skip
    cells = plan(bench)
    assert len(cells) == 9
    orders = [[c.condition for c in cells if c.rep == rep] for rep in (1, 2, 3)]
    assert orders == [
        ["none", "mlflow", "paper wandb"],
        ["mlflow", "paper wandb", "none"],
        ["paper wandb", "none", "mlflow"],
    ]
    assert Cell("cifar10", "mltrail", "mlflow,wandb", 2).key == "cifar10-mlflow+wandb-2"


def _bench(workdir: Path, *extra: str) -> int:
    return main([
        "bench", "--params", str(PARAMS), "--out", str(workdir / "reports"),
        "--work", str(workdir / "bench"), "--no-progress",
        "--set", f"data.mirror={shared_datasets()}",
        "--set", "bench.repeats=1", "--set", "bench.text_rows=300",
        "--set", "bench.cifar10_train_size=200", "--set", "bench.cifar10_test_size=100",
        "--set", "train_cifar10.epochs=1", *extra,
    ])  # fmt: skip


def _tables(markdown: str) -> dict[str, dict[str, list[str]]]:
    """Table title -> condition -> the row's cells."""
    tables: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in markdown.splitlines():
        if line.startswith("### Table"):
            current = line.removeprefix("### ").split(":")[0]
            tables[current] = {}
        elif current and line.startswith("| ") and not line.startswith(("| condition", "| ---")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[current][cells[0]] = cells[1:]
    return tables


def _mlflow_runs(workdir: Path) -> int:
    client = MlflowClient(f"sqlite:///{workdir / 'bench' / 'mlflow.db'}")
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


@pytest.mark.shared_data
def test_bench_matrix_report_tool_runtimes_and_resume(workdir: Path) -> None:
    assert _bench(workdir) == 0
    out = workdir / "reports"
    results = json.loads((out / "benchmark.json").read_text())
    cells = results["cells"]
    assert len(cells) == 12
    for task in ("text", "cifar10"):
        assert sorted(c["condition"] for c in cells if c["cell"]["task"] == task) == sorted(
            CONDITIONS
        )

    # Every table has a row for every condition, with numbers in its measured columns.
    tables = _tables((out / "benchmark.md").read_text())
    assert sorted(tables) == [f"Table {n}" for n in range(2, 8)]
    for rows in tables.values():
        assert sorted(rows) == sorted(CONDITIONS)
        for row in rows.values():
            assert re.match(r"^\d+\.\d+", row[0]), row
    for name in ("Table 4", "Table 7"):  # runtime: each tool's column filled where it ran
        for cond, row in tables[name].items():
            assert (row[4] != "-") == ("mlflow" in cond), (cond, row)
            assert (row[5] != "-") == ("wandb" in cond), (cond, row)
    quality = tables["Table 2"]
    assert len({row[0] for row in quality.values()}) == 1  # the same accuracy everywhere

    # Tool runtimes are the tools' own records.
    client = MlflowClient(f"sqlite:///{workdir / 'bench' / 'mlflow.db'}")
    for cell in cells:
        runs = cell["tool_runs"]
        if "mlflow" in runs:
            info = client.get_run(runs["mlflow"]["run_id"]).info
            assert cell["tool_runtime_s"]["mlflow"] == (info.end_time - info.start_time) / 1000
        if "wandb" in runs:
            found = wandb_inspect(Path(runs["wandb"]["run_dir"]))
            assert found["state"] == "finished" and found["exit_code"] == 0
            assert cell["tool_runtime_s"]["wandb"] == found["summary"]["_runtime"]
            assert found["summary"]["accuracy"] == cell["metrics"]["accuracy"]
        assert cell["complete_s"] >= (cell["wall_s"] if cell["cell"]["way"] == "paper" else 0)
    mltrail_mlflow = next(c for c in cells if c["condition"] == "mlflow")
    journal = Path(mltrail_mlflow["tool_runs"]["journal"]) / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    trained = records[-1]["time"] - records[0]["time"]  # the training's own start to end
    assert mltrail_mlflow["tool_runtime_s"]["mlflow"] == pytest.approx(trained, abs=0.002)

    # The report regenerates from benchmark.json alone.
    rendered = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".csv")}
    for path in out.iterdir():
        if path.name != "benchmark.json":
            path.unlink()
    runs_before = _mlflow_runs(workdir)
    assert main(["bench", "--report-only", "--out", str(out)]) == 0
    assert {
        p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".csv")
    } == rendered
    assert (out / "benchmark-text.png").is_file() and (out / "benchmark-cifar10.png").is_file()
    assert _mlflow_runs(workdir) == runs_before

    # Resuming: finished cells are skipped; a missing one is run again, alone.
    cell_files = sorted((workdir / "bench" / "cells").rglob("*.json"))
    assert len(cell_files) == 12
    stamps = {p: p.stat().st_mtime_ns for p in cell_files}
    redo = next(p for p in cell_files if p.name == "text-mlflow-1.json")
    redo.unlink()
    assert _bench(workdir) == 0
    assert _mlflow_runs(workdir) == runs_before + 1
    for path, stamp in stamps.items():
        if path != redo:
            assert path.stat().st_mtime_ns == stamp
    assert redo.is_file()


@pytest.mark.shared_data
def test_bench_refuses_a_wrong_tracker_before_running(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench(workdir, "--set", "bench.trackers=[none, mlfow]") == 1
    assert "unknown tracker 'mlfow'" in capsys.readouterr().err
    assert not (workdir / "bench").exists()


def test_wait_quiet_waits_for_the_cells_processes_only(tmp_path: Path) -> None:
    """A W&B service owned by a live, unrelated process (a notebook, this test) is not the
    cell's: waiting for it would stall every cell for the whole timeout."""
    import os
    import subprocess
    import sys
    import time

    from mltrail.bench.matrix import wait_quiet

    def fake_wandb_core(owner: int) -> subprocess.Popen[bytes]:
        python = sys.executable  # the interpreter itself: a pyenv shim would rename argv[0]
        script = f'exec -a /x/wandb-core {python} -c "import time; time.sleep(30)" --pid {owner}'
        return subprocess.Popen(["bash", "-c", script])

    unrelated = fake_wandb_core(os.getpid())  # its owner (this process) runs
    cell = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)", str(tmp_path)])
    orphan = None
    try:
        time.sleep(0.3)
        started = time.monotonic()
        wait_quiet(tmp_path, timeout_s=20)  # the cell's process exits after 1.5 s ...
        assert cell.poll() is not None
        assert time.monotonic() - started < 5  # ... and the unrelated service is ignored
        orphan = fake_wandb_core(2**22 + 7)  # its owner is gone: shutting down, the cell's
        time.sleep(0.3)
        started = time.monotonic()
        wait_quiet(None, timeout_s=1.0)  # the orphaned service is waited for, up to 1 s
        assert time.monotonic() - started >= 1.0
    finally:
        for proc in (unrelated, orphan, cell):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_wait_idle_cpu_waits_for_a_busy_core_to_go_quiet() -> None:
    """A process still burning a core when the next cell would start is waited for: on the
    2-core machines of this project, one busy core is half the machine."""
    import os
    import subprocess
    import sys
    import time

    from mltrail.bench.matrix import wait_idle_cpu

    cores = os.cpu_count() or 1
    # Busy enough to pass the 15% threshold on any machine: every core for 2 s.
    burn = "import time\nt = time.monotonic() + 2.0\nwhile time.monotonic() < t: pass"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(cores)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert wait_idle_cpu(window_s=0.25, timeout_s=0.8) is False  # still burning: gives up
        assert time.monotonic() - started >= 0.75
        for proc in burners:
            proc.wait(timeout=10)
        # Quiet once they are gone; a machine busy with other work may need a few windows.
        assert wait_idle_cpu(max_busy=0.6, window_s=0.25, timeout_s=10) is True
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
