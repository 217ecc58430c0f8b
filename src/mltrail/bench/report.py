"""The benchmark report: the paper's Tables 2-7 as measured here, from stored cell results.

``benchmark.json`` holds everything measured (one record per cell, plus the machine, library
versions, sizes, date); ``benchmark.md``, ``benchmark.csv`` and ``benchmark-<task>.png`` are
rendered from it alone, so ``mltrail bench --report-only`` regenerates them without running
anything. The only numbers not measured are the paper's, in ``PAPER`` and labelled as such.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from mltrail.fsio import atomic_file

# The paper's published figures that mltrail's issues quote (IJERT vol. 14 no. 10, 2025). The
# paper's full Tables 2-7 were not readable offline here, so only these appear, as quoted.
PAPER: dict[str, dict[str, str]] = {
    "text": {
        "none": "training ~0.5 s",
        "mlflow": "+~11 s over none",
        "wandb": "+26-42 s over none",
    },
    "cifar10": {},
}
TASK_TITLES = {
    "text": "Text: TF-IDF + logistic regression, IMDB",
    "cifar10": "Vision: CNN, CIFAR-10",
}
QUALITY = {
    "text": [("accuracy", "accuracy"), ("f1_macro", "F1-macro"), ("f1_weighted", "F1-weighted")],
    "cifar10": [("accuracy", "accuracy"), ("test_loss", "test loss")],
}
TABLES = {"text": (2, 3, 4), "cifar10": (5, 6, 7)}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    fmt = f"{{:.{digits}f}}"
    med = fmt.format(_median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def by_condition(cells: list[dict[str, Any]], task: str) -> dict[str, list[dict[str, Any]]]:
    """Cells of ``task`` grouped by condition, conditions in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        if cell["cell"]["task"] == task:
            groups.setdefault(cell["condition"], []).append(cell)
    order = sorted(groups, key=lambda c: (c.startswith("paper"), c != "none"))
    return {c: groups[c] for c in order}


def _metric(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r["metrics"][key]) for r in runs if r["metrics"].get(key) is not None]


def _field(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in runs]


def _tool(runs: list[dict[str, Any]], tool: str) -> list[float]:
    return [float(r["tool_runtime_s"][tool]) for r in runs if tool in r["tool_runtime_s"]]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    cells = results["cells"]
    m = meta["machine"]
    lines = [
        "# What tracking costs: the paper's Tables 2-7, measured here",
        "",
        f"`{meta['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']}, {meta['date']}. {meta['repeats']} repetition(s) per cell, each "
        "a fresh process, conditions rotating each repetition. Sizes: "
        + ", ".join(f"{k} {v}" for k, v in meta["sizes"].items())
        + ".",
        "",
        "Conditions: `none` (no tracking), `mlflow`, `wandb`, `mlflow+wandb` through mltrail's "
        "tracking layer (journal + background export), and `paper mlflow` / `paper wandb`: the "
        "paper's way, the client inline in the training (MLflow's fluent API and `log_model` "
        "defaults; `wandb.init/log/finish`). Medians, with min-max over repetitions.",
        "",
        "- **total runtime**: the whole training process, measured around it (what a user or "
        "DVC waits for).",
        "- **complete in tool**: from process start until the run (params, metrics, model) is "
        "complete in every chosen tool; mltrail exports in the background, so this can outlast "
        "the process.",
        "- **MLflow-recorded / W&B-recorded**: the runtime the tool itself stored (MLflow: run "
        "end - start in its store; W&B: `_runtime` in its run file, whole seconds). mltrail "
        "gives MLflow the training's own start and end. W&B accepts no start time: it counts "
        "from `wandb.init`, which mltrail's exporter calls as the training's run begins, to "
        "the end of the export, so about the training's own duration too.",
        "",
    ]
    for task in [t for t in ("text", "cifar10") if any(c["cell"]["task"] == t for c in cells)]:
        lines += _task_section(task, by_condition(cells, task))
    lines += [
        f"Libraries: {', '.join(f'{k} {v}' for k, v in m['libraries'].items())}.",
        "",
        "Paper column: the figures of the paper (IJERT vol. 14 no. 10, 2025) as quoted in "
        "mltrail's issues; its full tables could not be read where this report was made. "
        "Everything else was measured in this run; `benchmark.json` holds every cell.",
        "",
    ]
    return "\n".join(lines)


def _task_section(task: str, groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    t_quality, t_time, t_runtime = TABLES[task]
    lines = [f"## {TASK_TITLES[task]}", ""]
    # Quality: identical across conditions for the same seed (the paper's Table 2 finding).
    quality = QUALITY[task]
    rows = []
    for cond, runs in groups.items():
        rows.append([cond] + [_spread(_metric(runs, k), 4) for k, _ in quality])
    lines += [f"### Table {t_quality}: model quality", ""]
    lines += _table(["condition", *[label for _, label in quality]], rows)
    spread = 0.0
    for key, _ in quality:
        every = [x for runs in groups.values() for x in _metric(runs, key)]
        spread = max(spread, max(every) - min(every))
    lines += [
        "",
        f"Largest difference of any quality metric across all conditions and repetitions: "
        f"{spread:.2e}" + (" (identical)." if spread == 0 else "."),
        "",
    ]
    rows = [
        [
            cond,
            _spread(_metric(runs, "train_time_s"), 3),
            _spread(_metric(runs, "predict_time_s"), 3),
        ]
        for cond, runs in groups.items()
    ]
    lines += [f"### Table {t_time}: training and prediction time (s, inside the process)", ""]
    lines += _table(["condition", "train s", "predict s"], rows)
    lines += [""]
    base = _median(_field(groups.get("none", []), "wall_s") or [float("nan")])
    rows = []
    for cond, runs in groups.items():
        walls = _field(runs, "wall_s")
        completes = _field(runs, "complete_s")
        mlflow = _tool(runs, "mlflow")
        wandb = _tool(runs, "wandb")
        paper_key = cond.removeprefix("paper ")
        rows.append(
            [
                cond,
                _spread(walls),
                f"{_median(walls) / base:.3f}",
                _spread(completes),
                f"{_median(completes) / base:.2f}",
                _spread(mlflow),
                _spread(wandb, 0),
                PAPER[task].get(paper_key, "-")
                if cond.startswith("paper") or cond == "none"
                else "-",
            ]
        )
    lines += [f"### Table {t_runtime}: total runtime, and what the tools recorded (s)", ""]
    lines += _table(
        [
            "condition",
            "total runtime",
            "/ none",
            "complete in tool",
            "/ none",
            "MLflow-recorded",
            "W&B-recorded",
            "paper (quoted)",
        ],
        rows,
    )
    lines += ["", f"![runtime per condition, {task}](benchmark-{task}.png)", ""]
    return lines


CSV_FIELDS = [
    "task",
    "condition",
    "rep",
    "wall_s",
    "complete_s",
    "train_time_s",
    "predict_time_s",
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "test_loss",
    "mlflow_runtime_s",
    "wandb_runtime_s",
]


def render_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for cell in results["cells"]:
        metrics = cell["metrics"]
        writer.writerow(
            {
                "task": cell["cell"]["task"],
                "condition": cell["condition"],
                "rep": cell["cell"]["rep"],
                "wall_s": cell["wall_s"],
                "complete_s": cell["complete_s"],
                **{k: metrics.get(k, "") for k in CSV_FIELDS[5:11]},
                "mlflow_runtime_s": cell["tool_runtime_s"].get("mlflow", ""),
                "wandb_runtime_s": cell["tool_runtime_s"].get("wandb", ""),
            }
        )
    return buffer.getvalue()


def plot(results: dict[str, Any], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_condition(results["cells"], task)
    names = list(groups)
    walls = [_field(groups[n], "wall_s") for n in names]
    completes = [_field(groups[n], "complete_s") for n in names]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for offset, series, label in (
        (-width / 2, walls, "total runtime"),
        (width / 2, completes, "complete in tool"),
    ):
        meds = [_median(v) for v in series]
        low = [m - min(v) for m, v in zip(meds, series, strict=True)]
        high = [max(v) - m for m, v in zip(meds, series, strict=True)]
        ax.bar([x + offset for x in xs], meds, width, yerr=[low, high], capsize=3, label=label)
    ax.set_xticks(list(xs), names, rotation=20)
    ax.set_ylabel("seconds (median, min-max)")
    ax.set_title(TASK_TITLES[task])
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> list[Path]:
    """Render every report file from ``results`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("benchmark.md", render_markdown(results)),
        ("benchmark.csv", render_csv(results)),
    ):
        with atomic_file(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(out / name)
    for task in sorted({c["cell"]["task"] for c in results["cells"]}):
        plot(results, task, out / f"benchmark-{task}.png")
        written.append(out / f"benchmark-{task}.png")
    return written
