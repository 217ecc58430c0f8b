"""``mltrail runs`` as text for a person: the table, one run, a comparison. Each takes the
JSON shape of :mod:`mltrail.tracking.runs` (what ``--json`` prints), so both say the same."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

COLUMNS = (
    "RUN",
    "STAGE",
    "TASK",
    "STATUS",
    "TRACKERS",
    "START (UTC)",
    "DURATION",
    "PARAMS",
    "DATA",
    "MODEL",
    "COMMIT",
    "METRICS",
)


def _short(value: Any, n: int = 8) -> str:
    return "-" if value is None else str(value)[:n]


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def tracker_cell(name: str, view: Mapping[str, Any]) -> str:
    """``mlflow 1a2b3c4d FINISHED``; ``mlflow pending``; ``wandb unreachable``; ..."""
    state = view["state"]
    if state == "found":
        return f"{name} {_short(view['run_id'])} {view['status']}"
    return f"{name} {state}"


def table_row(row: Mapping[str, Any]) -> list[str]:
    start = row["start"]
    return [
        row["run_id"][:12],
        _short(row["stage"], 24),
        _short(row["task"], 10),
        (row["status"] or "-") + (" !" if row["disagreements"] else ""),
        ", ".join(tracker_cell(n, v) for n, v in row["trackers"].items()) or "none",
        start[:16].replace("T", " ") if start else "-",
        "-" if row["duration_s"] is None else f"{row['duration_s']:.1f}s",
        _short(row["params_sha256"]),
        _short(row["data_sha256"]),
        _short(row["model_sha256"]),
        _short(row["commit"]),
        " ".join(f"{k} {_number(v)}" for k, v in row["metrics"].items()) or "-",
    ]


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "no runs"
    cells = [list(COLUMNS), *(table_row(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    if any(r["disagreements"] for r in rows):
        lines.append("! the tools disagree on a value: `mltrail runs show RUN` says which")
    return "\n".join(lines)


def _said(name: str, value: Any) -> str:
    if name in ("start", "end") and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")
    return json.dumps(value, default=str)


def _sourced(name: str, entry: Mapping[str, Any]) -> str:
    value = _said(name, entry["value"])
    sources = entry["sources"]
    if entry["disagree"]:
        each = ", ".join(f"{s} {_said(name, v)}" for s, v in sources.items())
        return f"{value}  DISAGREE: {each}"
    return f"{value}  ({', '.join(sources)})"


def show(found: Mapping[str, Any]) -> str:
    row = found["run"]
    lines = [f"run       {row['run_id']}  (sources: {', '.join(row['sources'])})"]
    for name, view in row["trackers"].items():
        where = view.get("url") or ""
        extra = view.get("error") or ""
        status = view.get("status") or ""
        said = " ".join(
            str(p) for p in (view["state"], view.get("run_id"), status, where, extra) if p
        )
        lines.append(f"{name:<9} {said}  (export: {view['export'] or 'unknown here'})")
    for title in ("fields", "params", "metrics"):
        for name, entry in found[title].items():
            label = name if title == "fields" else f"{title[:-1]} {name}"
            lines.append(f"  {label:<32} {_sourced(name, entry)}")
    if row["disagreements"]:
        lines.append("disagreements: " + ", ".join(row["disagreements"]))
    return "\n".join(lines)


def changes(diff: Mapping[str, Any]) -> str:
    lines = [f"A {diff['a']}", f"B {diff['b']}"]
    params = diff["params"]
    for name, (a, b) in params["changed"].items():
        lines.append(f"param   {name}: {a} -> {b}")
    lines += [f"param   {n}: only in A ({v})" for n, v in params["only_a"].items()]
    lines += [f"param   {n}: only in B ({v})" for n, v in params["only_b"].items()]
    if not any(params.values()):
        lines.append("params  the same")
    for name, m in diff["metrics"].items():
        delta = m["delta"]
        sign = "" if delta is None else f" ({'+' if delta >= 0 else ''}{delta:.4g})"
        lines.append(f"metric  {name}: {_number(m['a'])} -> {_number(m['b'])}{sign}")
    for name, label in (
        ("data_sha256", "data"),
        ("commit", "code"),
        ("dirty", "dirty"),
        ("model_sha256", "model"),
    ):
        change = diff[name]
        said = "changed" if change["changed"] else "same"
        lines.append(f"{label:<7} {said}: {_short(change['a'], 16)} -> {_short(change['b'], 16)}")
    return "\n".join(lines)
