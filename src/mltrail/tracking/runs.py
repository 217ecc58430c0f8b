"""``mltrail runs``: every run across the journal, MLflow and W&B, merged into one record each.

:func:`collect` reads each source (:mod:`mltrail.tracking.run_sources`); the rest are pure
functions over what was read: :func:`merge` (one record per mltrail run id, each field with
the sources that state it and a flag where they disagree), :func:`row` (the table's shape),
:func:`select` (the filters), :func:`compare`.

The JSON shapes are documented in docs/tracking.md ("Every run in one place"); a key is
added there before it is added here, never renamed.
"""

from __future__ import annotations

import ast
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mltrail.config import TrackingParams
from mltrail.errors import MltrailError
from mltrail.tracking.lineage import params_hash
from mltrail.tracking.run_sources import (
    Gap,
    Read,
    SourceRun,
    read_journal,
    read_mlflow,
    read_wandb,
    wandb_run_dirs,
)

SOURCES = ("journal", "manifest", "mlflow", "wandb")
"""Sources in the order their value is preferred when they disagree: what the training
process wrote first, then what the tools received from it."""
TRACKERS = ("mlflow", "wandb")
FIELDS = (
    "stage",
    "task",
    "status",
    "start",
    "end",
    "commit",
    "dirty",
    "data_sha256",
    "model_sha256",
    "params_sha256",
)
HEADLINE = ("accuracy", "f1_macro", "loss")
"""Metrics the table shows when a run has them (else its first two, by name)."""
TIME_TOLERANCE_S = 0.002
"""Times agree within this: MLflow keeps milliseconds, the journal microseconds."""


@dataclass
class Merged:
    """One run, every source's view of it merged."""

    run_id: str
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {source: value}"""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    """source -> its own view (ids, URL, export states)"""

    def value(self, name: str) -> Any:
        return _preferred(self.fields.get(name, {}))

    @property
    def sources(self) -> list[str]:
        return [s for s in SOURCES if s in self.tools]

    def trackers(self) -> list[str]:
        """The trackers the run was sent to (the journal says), else those that have it."""
        journal = self.tools.get("journal")
        if journal is not None:
            return [t for t in journal["backends"] if t in TRACKERS]
        return [t for t in TRACKERS if t in self.tools]


def collect(settings: TrackingParams) -> tuple[list[Merged], list[Gap]]:
    """Read the journal under ``settings.journal_dir``, every MLflow store a run was sent to
    (and ``settings.mlflow_uri``), and W&B's local run folders; merge them."""
    read = read_journal(Path(settings.journal_dir))
    journals = [r for r in read.runs if r.source == "journal"]
    sent = [r.tool["backends"]["mlflow"] for r in journals if "mlflow" in r.tool["backends"]]
    read.add(read_mlflow([*sent, settings.mlflow_uri], required=sent))
    wandb_dirs = [Path(settings.wandb_dir)] + [
        Path(r.tool["wandb_dir"]) for r in journals if r.tool.get("wandb_dir")
    ]
    known = [
        Path(state["run_dir"])
        for r in journals
        if (state := r.tool["exports"].get("wandb")) and state.get("run_dir")
    ]
    read.add(read_wandb(wandb_run_dirs(wandb_dirs, known)))
    return merge(read), read.gaps


def merge(read: Read) -> list[Merged]:
    """One :class:`Merged` per mltrail run id, newest first."""
    runs: dict[str, Merged] = {}
    for source in read.runs:
        merged = runs.setdefault(source.run_id, Merged(source.run_id))
        _absorb(merged, source)
    for merged in runs.values():
        if "params_sha256" not in merged.fields and merged.params:
            # No manifest (a run that logged no model): hash the logged params, flat.
            merged.fields["params_sha256"] = {"computed": params_hash(_params_of(merged))}
    return sorted(runs.values(), key=lambda m: m.value("start") or 0.0, reverse=True)


def _absorb(merged: Merged, source: SourceRun) -> None:
    for name, value in source.fields.items():
        merged.fields.setdefault(name, {})[source.source] = value
    for name, value in source.params.items():
        merged.params.setdefault(name, {})[source.source] = value
    for name, number in source.metrics.items():
        merged.metrics.setdefault(name, {})[source.source] = number
    merged.tools[source.source] = source.tool


def _params_of(merged: Merged) -> dict[str, Any]:
    return {k: _preferred(v) for k, v in merged.params.items()}


def _preferred(by_source: Mapping[str, Any]) -> Any:
    for source in (*SOURCES, "computed"):
        # The journal's tags are strings: a commit unknown outside git is "None" there.
        if _normal(by_source.get(source)) is not None:
            return by_source[source]
    return None


# --- agreement -----------------------------------------------------------------------------


def _normal(value: Any) -> Any:
    """A value as every tool would compare it: MLflow keeps params as strings (``"2.0"``,
    ``"True"``, ``"['a']"``), W&B's JSON turns ``2.0`` into ``2``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("None", "null"):  # MLflow's str(None); W&B's and the journal's null
            return None
        if text in ("True", "False", "true", "false"):
            return text.lower() == "true"
        try:
            return float(text)
        except ValueError:
            pass
        if text[:1] in "[({":
            try:
                return _normal(ast.literal_eval(text))
            except (ValueError, SyntaxError):
                return text
        return text
    if isinstance(value, list | tuple):
        return tuple(_normal(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _normal(v)) for k, v in value.items()))
    return value


def _same(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    a, b = _normal(a), _normal(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=max(tolerance, 1e-12))
    return bool(a == b)


def disagree(by_source: Mapping[str, Any], name: str = "") -> bool:
    """Whether the sources that state a value state different ones."""
    tolerance = TIME_TOLERANCE_S if name in ("start", "end") else 0.0
    values = [v for v in by_source.values() if _normal(v) is not None]
    return any(not _same(values[0], v, tolerance) for v in values[1:])


def disagreements(run: Merged) -> list[str]:
    """The fields, params (``params.<name>``) and metrics (``metrics.<name>``) on which the
    sources of ``run`` differ."""
    found = [n for n, v in run.fields.items() if disagree(v, n)]
    found += [f"params.{n}" for n, v in sorted(run.params.items()) if disagree(v)]
    found += [f"metrics.{n}" for n, v in sorted(run.metrics.items()) if disagree(v)]
    return found


# --- the shapes ----------------------------------------------------------------------------


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def tracker_view(run: Merged, tracker: str, gaps: Sequence[Gap]) -> dict[str, Any]:
    """What ``tracker`` has of ``run``: the export's state (from the journal), and the tool's
    own run id, URL and status when the tool was read and has the run.

    ``state``: ``found`` (the tool has it), ``pending`` (its export failed; the error says
    why; ``mltrail tracking sync`` retries), ``exporting`` (not finished yet), ``unreachable``
    (the tool could not be read), ``missing`` (exported, but the tool no longer has it).
    """
    journal = run.tools.get("journal")
    export = (journal or {}).get("exports", {}).get(tracker) or {}
    tool = run.tools.get(tracker)
    # No state file yet: its exporter has not finished. No journal: a run journalled
    # elsewhere (another machine, a removed folder), whose export nobody here knows.
    view: dict[str, Any] = {"export": export.get("status", "exporting") if journal else None}
    if tool is not None:
        view |= {"state": "found", "run_id": tool["run_id"], "url": tool["url"]}
        view["status"] = tool["status"]
    elif export.get("status") == "pending":
        view |= {"state": "pending", "error": export.get("error")}
    elif _unreachable(run, tracker, gaps):
        view |= {"state": "unreachable", "error": _unreachable(run, tracker, gaps)}
    elif export.get("status") == "done":
        view |= {"state": "missing", "run_id": export.get("run_id"), "url": export.get("uri")}
    else:
        view["state"] = "exporting"
    if tool is not None and export.get("mode") == "online" and export.get("uri"):
        # An online W&B run's URL is known to its export, not to its local run folder.
        view["url"] = export["uri"]
    return view


def _unreachable(run: Merged, tracker: str, gaps: Sequence[Gap]) -> str | None:
    journal = run.tools.get("journal") or {}
    target = journal.get("backends", {}).get(tracker)
    if tracker == "wandb":  # W&B is read run folder by run folder: this run's folder
        export = journal.get("exports", {}).get("wandb") or {}
        target = str(Path(export["run_dir"]).resolve()) if export.get("run_dir") else None
    for gap in gaps:
        if gap.tool == tracker and gap.target in (target, "*"):
            return gap.error
    return None


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    chosen = [k for k in HEADLINE if k in metrics] or sorted(metrics)[:2]
    return {k: metrics[k] for k in chosen}


def row(run: Merged, gaps: Sequence[Gap] = ()) -> dict[str, Any]:
    """The table's record of ``run`` (``mltrail runs list --json``: one per run)."""
    start, end = run.value("start"), run.value("end")
    metrics = {k: _preferred(v) for k, v in run.metrics.items()}
    return {
        "run_id": run.run_id,
        "stage": run.value("stage"),
        "task": run.value("task"),
        "status": run.value("status"),
        "trackers": {t: tracker_view(run, t, gaps) for t in run.trackers()},
        "start": _iso(start),
        "duration_s": round(end - start, 3) if start is not None and end is not None else None,
        "params_sha256": run.value("params_sha256"),
        "data_sha256": run.value("data_sha256"),
        "model_sha256": run.value("model_sha256"),
        "commit": run.value("commit"),
        "metrics": headline(metrics),
        "sources": run.sources,
        "disagreements": disagreements(run),
    }


def detail(run: Merged, gaps: Sequence[Gap] = ()) -> dict[str, Any]:
    """Everything ``run`` has (``mltrail runs show --json``): the row, then each field, param
    and metric with the value each source states and whether they disagree."""

    def entries(values: Mapping[str, Mapping[str, Any]], prefix: str = "") -> dict[str, Any]:
        return {
            name: {
                "value": _preferred(by_source),
                "sources": dict(by_source),
                "disagree": disagree(by_source, prefix + name),
            }
            for name, by_source in sorted(values.items())
        }

    return {
        "run": row(run, gaps),
        "fields": entries(run.fields),
        "params": entries(run.params),
        "metrics": entries(run.metrics),
        "tools": run.tools,
    }


# --- filters and lookup --------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    task: str | None = None
    stage: str | None = None
    tracker: str | None = None
    status: str | None = None
    since: float | None = None


def select(runs: Iterable[Merged], filters: Filters) -> list[Merged]:
    def keep(run: Merged) -> bool:
        return (
            (filters.task is None or run.value("task") == filters.task)
            and (filters.stage is None or run.value("stage") == filters.stage)
            and (filters.tracker is None or filters.tracker in run.trackers())
            and (filters.status is None or run.value("status") == filters.status)
            and (filters.since is None or (run.value("start") or 0.0) >= filters.since)
        )

    return [r for r in runs if keep(r)]


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a date or time (``2026-12-01``, ``2026-12-01T09:30``, UTC unless it says
    otherwise) or an age (``30m``, ``12h``, ``7d``, ``2w``); seconds since the epoch."""
    now = time.time() if now is None else now
    unit = _UNITS.get(text[-1:])
    if unit is not None and text[:-1].isdigit():
        return now - int(text[:-1]) * unit
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MltrailError(
            f"--since {text!r} is neither a date nor an age",
            hint="give a date (2026-12-01, 2026-12-01T09:30) or an age (30m, 12h, 7d, 2w)",
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def find(runs: Sequence[Merged], key: str) -> Merged:
    """The run ``key`` names: its mltrail run id, or a tool's run id, or a unique prefix."""
    exact = [r for r in runs if key == r.run_id or key in _tool_ids(r)]
    matches = exact or [
        r for r in runs if r.run_id.startswith(key) or any(i.startswith(key) for i in _tool_ids(r))
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MltrailError(
            f"no run {key!r} in the journal, MLflow or W&B",
            hint="`mltrail runs list` shows the run ids (an MLflow run id works too)",
        )
    ids = ", ".join(r.run_id[:12] for r in matches[:5])
    raise MltrailError(f"{key!r} names {len(matches)} runs ({ids})", hint="give more of the id")


def _tool_ids(run: Merged) -> list[str]:
    return [str(t["run_id"]) for s, t in run.tools.items() if s in TRACKERS and t.get("run_id")]


# --- compare -------------------------------------------------------------------------------


def compare(a: Merged, b: Merged) -> dict[str, Any]:
    """What changed from ``a`` to ``b`` (``mltrail runs compare --json``): params changed,
    added and removed; each metric's values and ``b - a``; data and code (commit, dirty tree),
    params and model hashes with whether they changed."""
    pa, pb = _params_of(a), _params_of(b)
    ma = {k: _preferred(v) for k, v in a.metrics.items()}
    mb = {k: _preferred(v) for k, v in b.metrics.items()}
    return {
        "a": a.run_id,
        "b": b.run_id,
        "params": {
            "changed": {
                k: [pa[k], pb[k]] for k in sorted(pa.keys() & pb.keys()) if not _same(pa[k], pb[k])
            },
            "only_a": {k: pa[k] for k in sorted(pa.keys() - pb.keys())},
            "only_b": {k: pb[k] for k in sorted(pb.keys() - pa.keys())},
        },
        "metrics": {
            k: {"a": ma.get(k), "b": mb.get(k), "delta": _delta(ma.get(k), mb.get(k))}
            for k in sorted(ma.keys() | mb.keys())
        },
        **{name: _change(a, b, name) for name in ("commit", "dirty", "data_sha256")},
        "params_sha256": _change(a, b, "params_sha256"),
        "model_sha256": _change(a, b, "model_sha256"),
    }


def _delta(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else y - x


def _change(a: Merged, b: Merged, name: str) -> dict[str, Any]:
    va, vb = a.value(name), b.value(name)
    return {"a": va, "b": vb, "changed": not _same(va, vb)}
