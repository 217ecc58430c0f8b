"""The shipped CNN recipe against the paper's CNN, and what tracking adds, on full CIFAR-10.

Runs, each a fresh process (``mltrail train cifar10``), one after another on an idle machine:

1. tracking cost: the fast recipe under none, mlflow and wandb, ``--overhead-repeats`` times,
   alternating and rotating the order, for ``--overhead-epochs`` epochs (1 by default: a
   tracker's cost is per run and per epoch, so one epoch bounds its share from above);
2. the recipes: the fast recipe as shipped (params.yaml), then the paper's CNN (Adam 1e-3,
   batch 32) for 10 epochs.

Reports the paper model's 10-epoch accuracy, when the fast recipe first reached it (cumulative
training seconds, from its per-epoch history), both whole-process wall times, and the median
tracked wall time against the median untracked one.

    python benchmarks/cnn_recipe.py [--overhead-repeats 3] [--overhead-epochs 1]

Writes benchmarks/results/cnn_recipe.{json,md,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    REPO,
    fresh_dir,
    machine,
    median,
    mltrail,
    newest_run,
    tracking_overrides,
    wait_exported,
    wait_quiet,
)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=REPO / "data/prepared/cifar10")
    parser.add_argument("--paper-epochs", type=int, default=10)
    parser.add_argument("--overhead-repeats", type=int, default=3)
    parser.add_argument("--overhead-epochs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-cnn"))
    args = parser.parse_args()
    work = fresh_dir(args.work)
    params = REPO / "params.yaml"
    data = args.data.resolve()
    if not (data / "train.npz").is_file():
        data = work / "cifar10"
        mltrail(["prepare", "cifar10", "--params", str(params), "--out", str(data),
                 "--no-progress", "--download-dir", str(work / "raw")], work)  # fmt: skip
    common = ["--params", str(params), "--data", str(data), "--no-progress",
              *tracking_overrides(work)]  # fmt: skip
    runs: dict[str, dict[str, Any]] = {}
    trackers = ["none", "mlflow", "wandb"]
    short = ["--set", f"train_cifar10.epochs={args.overhead_epochs}"]
    plan = []
    for rep in range(args.overhead_repeats):
        for tracker in trackers[rep % 3 :] + trackers[: rep % 3]:
            plan.append((f"overhead {tracker} {rep + 1}", tracker, short))
    plan += [
        ("fast none", "none", []),
        ("paper none", "none", ["--set", "train_cifar10.recipe=paper",
                                "--set", f"train_cifar10.epochs={args.paper_epochs}"]),
    ]  # fmt: skip
    for name, tracker, extra in plan:
        out = work / name.replace(" ", "_")
        started, wall, _ = mltrail(
            ["train", "cifar10", "--tracker", tracker, "--out", str(out), *common, *extra], work
        )
        metrics = json.loads((out / "metrics.json").read_text())
        with (out / "history.csv").open() as f:
            history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        run: dict[str, Any] = {"wall_s": wall, "metrics": metrics, "history": history}
        if tracker != "none":
            run_dir = newest_run(work / "journal")
            state = wait_exported(run_dir, [tracker])[tracker]
            wait_quiet(run_dir)
            run["export_status"] = state["status"]
            run["complete_s"] = state.get("exported_at", started) - started
        runs[name] = run
        print(f"{name}: wall {wall:.1f} s, accuracy {metrics['accuracy']:.4f}", flush=True)
    report(runs, args)


def report(runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    paper, fast = runs["paper none"], runs["fast none"]
    target = paper["metrics"]["accuracy"]
    elapsed, reached_at, reached_epoch = 0.0, None, None
    for row in fast["history"]:
        elapsed += row["seconds"]
        if row["test_accuracy"] >= target:
            reached_at, reached_epoch = elapsed, int(row["epoch"])
            break
    walls = {
        t: [r["wall_s"] for n, r in runs.items() if n.startswith(f"overhead {t} ")]
        for t in ("none", "mlflow", "wandb")
    }
    base_wall = median(walls["none"])
    result = {
        "benchmark": "cnn_recipe",
        "command": f"python benchmarks/cnn_recipe.py --paper-epochs {args.paper_epochs} "
        f"--overhead-repeats {args.overhead_repeats} --overhead-epochs {args.overhead_epochs}",
        "machine": machine(),
        "paper_accuracy": target,
        "paper_wall_s": paper["wall_s"],
        "paper_train_s": paper["metrics"]["train_time_s"],
        "fast_accuracy": fast["metrics"]["accuracy"],
        "fast_wall_s": fast["wall_s"],
        "fast_train_s": fast["metrics"]["train_time_s"],
        "fast_reached_paper_accuracy_after_s": reached_at,
        "fast_reached_paper_accuracy_at_epoch": reached_epoch,
        "wall_ratio_fast_vs_paper": fast["wall_s"] / paper["wall_s"],
        "overhead_walls_s": walls,
        "tracking_wall_ratio": {t: median(walls[t]) / base_wall for t in ("mlflow", "wandb")},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cnn_recipe.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, target)
    m = result["machine"]
    ratio = result["tracking_wall_ratio"]
    reached = f"{reached_at:.0f} s (epoch {reached_epoch})" if reached_at is not None else "never"
    lines = [
        "# CNN recipe and tracking cost: full CIFAR-10 (50,000 / 10,000), CPU",
        "",
        f"`{result['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['date']}. One run per row, one after another, measured in the same session.",
        "",
        "| run | epochs | test accuracy | train s | whole process s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {int(run['metrics']['epochs'])} | {run['metrics']['accuracy']:.4f} | "
            f"{run['metrics']['train_time_s']:.1f} | {run['wall_s']:.1f} |"
        )
    lines += [
        "",
        f"- The paper's CNN reached {target:.4f} after {args.paper_epochs} epochs in "
        f"{paper['wall_s']:.0f} s (whole process).",
        f"- The fast recipe reached that accuracy after {reached} of training; its whole run "
        f"({fast['metrics']['accuracy']:.4f}) took {fast['wall_s']:.0f} s: "
        f"{result['wall_ratio_fast_vs_paper']:.2f} of the paper model's wall time.",
        f"- Tracking ({args.overhead_repeats} alternating runs of {args.overhead_epochs} "
        f"epoch(s) each), median whole-process wall against untracked "
        f"({base_wall:.1f} s): mlflow {ratio['mlflow']:.3f}, wandb {ratio['wandb']:.3f}. "
        f"Walls: {json.dumps({t: [round(w, 1) for w in v] for t, v in walls.items()})}.",
        "",
        "![accuracy against training time](cnn_recipe.png)",
    ]
    (RESULTS / "cnn_recipe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(runs: dict[str, dict[str, Any]], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("paper none", "fast none"):
        elapsed, xs, ys = 0.0, [], []
        for row in runs[name]["history"]:
            elapsed += row["seconds"]
            xs.append(elapsed)
            ys.append(row["test_accuracy"])
        ax.plot(xs, ys, marker="o", label=name.split()[0] + " recipe")
    ax.axhline(target, color="grey", linestyle="--", label="paper model, final")
    ax.set_xlabel("training seconds (CPU, 2 cores)")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cnn_recipe.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
