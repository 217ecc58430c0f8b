"""What tracking costs a training run: mltrail's tracking layer vs no tracking vs the paper's way.

Text task (TF-IDF + logistic regression) on a seeded 5,000-row IMDB sample, the paper's 0.5 s
regime. Each cell is a fresh process (``mltrail train text --tracker ...``); the conditions
alternate, rotating their order every repetition, so drift on a noisy machine hits all alike.
Measured per run:

- wall: the whole training process, start to exit (what a user or DVC waits for);
- complete: from process start until the run is complete in the tracker (params, metrics and
  a loadable model in MLflow's store; the W&B offline run finished), read from the exporter's
  state file. mltrail exports in the background, so this can outlast the process.

    python benchmarks/tracking_overhead.py [--repeats 5] [--rows 5000]

Needs the IMDB file in $MLTRAIL_DATA_MIRROR (or the download). Writes
benchmarks/results/tracking_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mltrail.bench.tool_runtime import mlflow_runtime_s, wandb_runtime_s

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BIN,
    REPO,
    fresh_dir,
    machine,
    median,
    mltrail,
    newest_run,
    prepare_text_sample,
    run,
    tracking_overrides,
    wait_exported,
    wait_idle_cpu,
    wait_quiet,
)

CONDITIONS = ["none", "mlflow", "wandb", "mlflow,wandb", "paper-style mlflow", "paper-style wandb"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-tracking"))
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render the report from the runs in results/tracking_overhead.json",
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(
            (Path(__file__).resolve().parent / "results/tracking_overhead.json").read_text()
        )
        args.repeats, args.rows = saved["repeats"], saved["rows"]
        report({r["condition"]: r["runs"] for r in saved["results"]}, args, saved["machine"])
        return
    work = fresh_dir(args.work)
    params = REPO / "params.yaml"
    data = prepare_text_sample(work, args.rows, params)
    common = ["--params", str(params), "--data", str(data), *tracking_overrides(work)]
    paper_db = f"sqlite:///{work / 'paper-mlflow.db'}"

    def once(condition: str, out: Path) -> dict[str, float]:
        # Every cell starts on a quiet machine: what the previous one left running (an
        # exporter's last writes, W&B's service, SQLite's checkpoint) is not charged to it.
        quiet = 1.0 if wait_idle_cpu() else 0.0
        result = _once(condition, out)
        return result | {"quiet_start": quiet}

    def _once(condition: str, out: Path) -> dict[str, float]:
        if condition.startswith("paper-style"):
            tool = condition.split()[1]
            script = str(REPO / "benchmarks" / "paper_style.py")
            _, wall, _ = run([str(BIN / "python"), script, tool, str(data), paper_db], work)
            wait_quiet()
            return {"wall": wall, "complete": wall}  # inline: complete when the process ends
        started, wall, _ = mltrail(
            ["train", "text", "--tracker", condition, "--out", str(out), *common], work
        )
        result = {
            "wall": wall,
            "train_time_s": json.loads((out / "metrics.json").read_text())["train_time_s"],
        }
        if condition != "none":
            backends = condition.split(",")
            run_dir = newest_run(work / "journal")
            states = wait_exported(run_dir, backends)
            wait_quiet(run_dir)
            if any(s["status"] != "done" for s in states.values()):
                raise RuntimeError(f"export failed: {states}")
            # Exported whole and finished, read back from each tool (raises otherwise).
            if "mlflow" in states:
                mlflow_runtime_s(states["mlflow"]["tracking_uri"], states["mlflow"]["run_id"])
            if "wandb" in states:
                wandb_runtime_s(Path(states["wandb"]["run_dir"]))
            result["complete"] = max(s["exported_at"] for s in states.values()) - started
        else:
            result["complete"] = wall
        return result

    # Warm-up (not counted): creates MLflow's tables, W&B's folders, file caches.
    for condition in CONDITIONS:
        once(condition, work / "warmup")
    samples: dict[str, list[dict[str, float]]] = {c: [] for c in CONDITIONS}
    for rep in range(args.repeats):
        order = CONDITIONS[rep % len(CONDITIONS) :] + CONDITIONS[: rep % len(CONDITIONS)]
        for condition in order:
            samples[condition].append(once(condition, work / f"out-{rep}"))
            print(
                f"rep {rep + 1}/{args.repeats} {condition:>20}: "
                f"wall {samples[condition][-1]['wall']:.2f} s, "
                f"complete {samples[condition][-1]['complete']:.2f} s"
                + ("" if samples[condition][-1]["quiet_start"] else " (started on a busy machine)"),
                flush=True,
            )
    report(samples, args, machine())


def report(
    samples: dict[str, list[dict[str, float]]],
    args: argparse.Namespace,
    measured_on: dict[str, Any],
) -> None:
    base_wall = median([s["wall"] for s in samples["none"]])
    # The fastest run of each condition too: on a shared machine noise only ever adds time,
    # so the minimum is the least disturbed run (timeit's advice) and the ratio of minimums the
    # most stable estimate of what tracking adds; the medians are given beside it.
    base_min = min(s["wall"] for s in samples["none"])
    rows: list[dict[str, Any]] = []
    for condition, runs in samples.items():
        walls = [r["wall"] for r in runs]
        completes = [r["complete"] for r in runs]
        rows.append({
            "condition": condition,
            "wall_median_s": median(walls),
            "wall_min_s": min(walls),
            "wall_max_s": max(walls),
            "wall_ratio": median(walls) / base_wall,
            "wall_min_ratio": min(walls) / base_min,
            "complete_median_s": median(completes),
            "complete_ratio": median(completes) / base_wall,
            "runs": runs,
        })  # fmt: skip
    result = {
        "benchmark": "tracking_overhead",
        "command": f"python benchmarks/tracking_overhead.py --repeats {args.repeats} "
        f"--rows {args.rows}",
        "machine": measured_on,
        "rows": args.rows,
        "repeats": args.repeats,
        "results": rows,
    }
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "tracking_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# Tracking overhead: text training, IMDB sample",
        "",
        f"`{result['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['date']}; {args.repeats} runs per condition, alternating, after one warm-up run each.",
        "",
        "wall: the whole training process. complete: process start until the run is complete in "
        "the tracker (params, metrics, loadable model). Ratios against `none` (median wall "
        f"{base_wall:.2f} s, fastest {base_min:.2f} s) measured in the same session: of medians, "
        "and of the fastest runs (noise on a shared machine only adds time, so the fastest run "
        "of each condition is its least disturbed one).",
        "",
        "| condition | wall median (min-max) s | wall / none (medians) | wall / none (fastest) "
        "| complete median s | complete / none |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} | {r['wall_median_s']:.2f} ({r['wall_min_s']:.2f}-"
            f"{r['wall_max_s']:.2f}) | {r['wall_ratio']:.3f} | {r['wall_min_ratio']:.3f} | "
            f"{r['complete_median_s']:.2f} | "
            f"{r['complete_ratio']:.2f} |"
        )
    lines.append("")
    runs = [r for rs in samples.values() for r in rs]
    busy = sum(1 for r in runs if not r.get("quiet_start", 1.0))
    lines.append(
        f"Each run started once the CPUs had been at most 15% busy for 0.5 s (waited up to 30 s): "
        f"{len(runs) - busy} of {len(runs)} runs started on a quiet machine."
    )
    lines.append("")
    lines.append(f"Libraries: {json.dumps(m['libraries'])}")
    (out / "tracking_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
