"""What the status page shows, gathered (the route renders it, :mod:`mltrail.serve.routers.page`).

Per served model: its lineage (commit -> data -> model -> tracker runs -> image tag) from the
manifest the server loaded, the live figures from the telemetry store (aggregated there in SQL:
a store of a million predictions sends back a few hundred rows), the latency and training time
of every version (the temporal audit's records), the monitor's decisions from its
``decisions.jsonl`` and the promotions from ``releases/history.jsonl``. Files are read from
their end, so a long history costs no more than a short one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from mltrail.contracts.manifest import Manifest
from mltrail.contracts.pointer import HISTORY_FILE, history_of
from mltrail.contracts.tasks import kind_spec
from mltrail.errors import MltrailError
from mltrail.fsio import read_json_lines
from mltrail.models.loading import LoadedModel
from mltrail.monitor.audit import (
    TimingRecord,
    read_history,
    serving_records,
    training_records,
)
from mltrail.monitor.report import DECISIONS
from mltrail.serve import svg
from mltrail.serve.settings import ServeSettings
from mltrail.telemetry import TelemetryStore, Traffic
from mltrail.telemetry.aggregate import CONFIDENCE_BINS
from mltrail.tracking.journal import read_state

BUCKETS = 48
"""Time buckets of the live charts."""
SHOWN = 20
"""Decisions and promotions listed (the newest)."""
TAIL_BYTES = 512 * 1024
"""How much of a JSON-lines file's end is read for its newest records."""


@dataclass
class TrackerRun:
    backend: str
    target: str
    run_id: str | None
    url: str | None
    state: str


@dataclass
class ModelView:
    """One served model on the page."""

    kind: str
    version: str
    source: str
    registry_version: str | None
    manifest: Manifest
    trackers: list[TrackerRun]
    traffic: Traffic | None
    timings: list[TimingRecord] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    regression: dict[str, Any] | None = None
    """The monitor's latest latency test of this version against the one it replaced."""
    charts: dict[str, Markup] = field(default_factory=dict)
    telemetry_note: str | None = None
    """Why the store could not be read (the figures are then empty)."""


def history_path(settings: ServeSettings) -> Path:
    if settings.releases_history:
        return Path(settings.releases_history)
    if settings.pointer_file:
        return history_of(Path(settings.pointer_file))
    return Path("releases") / HISTORY_FILE


def decisions_of(monitor_dir: Path, task: str) -> list[dict[str, Any]]:
    """The monitor's decisions for ``task``, oldest first: ``<dir>/<task>/decisions.jsonl``
    (the retrain loop's layout), else ``<dir>/decisions.jsonl`` (``mltrail monitor --out``)."""
    for path in (monitor_dir / task / DECISIONS, monitor_dir / DECISIONS):
        if path.is_file():
            tail = read_json_lines(path, tail_bytes=TAIL_BYTES)
            found = [r for r in tail if r.get("task", task) == task]
            return sorted(found, key=lambda r: float(r.get("time", 0.0)))[-SHOWN:]
    return []


def tracker_runs(manifest: Manifest, mlflow_ui_url: str | None) -> list[TrackerRun]:
    """Each backend the model was tracked in, its run id (from the journal's export state,
    when the journal is on this machine) and a link to the MLflow run."""
    journal = manifest.tracking.journal
    runs = []
    for backend, target in sorted(manifest.tracking.backends.items()):
        state = read_state(Path(journal), backend) if journal else None
        run_id = state.get("run_id") if state else None
        status = "unknown here (journal not on this machine)" if state is None else state["status"]
        url = None
        base = mlflow_ui_url or (target if target.startswith(("http://", "https://")) else None)
        if backend == "mlflow" and base and run_id and state and state.get("experiment_id"):
            url = f"{base.rstrip('/')}/#/experiments/{state['experiment_id']}/runs/{run_id}"
        elif backend == "wandb" and state and str(state.get("uri", "")).startswith("http"):
            url = str(state["uri"])
        runs.append(TrackerRun(backend, target, run_id, url, status))
    return runs


def model_view(
    model: LoadedModel,
    settings: ServeSettings,
    store: TelemetryStore | None,
    since: float,
    until: float,
) -> ModelView:
    spec = kind_spec(model.kind)
    manifest = model.manifest
    view = ModelView(
        model.kind,
        model.version,
        model.source,
        model.registry_version,
        manifest,
        tracker_runs(manifest, settings.mlflow_ui_url),
        None,
    )
    history = read_history(history_path(settings), manifest.task, tail_bytes=TAIL_BYTES)
    view.promotions = history[-SHOWN:]
    view.decisions = decisions_of(Path(settings.monitor_dir), manifest.task)
    view.timings = training_records(manifest)
    # Training times of the versions promoted before (their release folders' manifests).
    for record in view.promotions:
        release = Path(str(record.get("release", "")))
        if record.get("version") != model.version and (release / "manifest.json").is_file():
            try:
                view.timings += training_records(Manifest.read(release))
            except Exception:  # a release folder this mltrail cannot read: not shown
                continue
    latest = [
        d for d in view.decisions if d.get("model_version") == model.version and d.get("latency")
    ]
    if latest:
        view.regression = latest[-1]["latency"].get("regression")
    if store is not None:
        try:
            view.traffic = store.read_traffic(since, until, BUCKETS, spec.endpoint)
            view.timings += serving_records(view.traffic.versions)  # in the period
        except MltrailError as exc:  # no store file yet (nothing served), or unreachable
            view.telemetry_note = str(exc)
            view.traffic = Traffic(since, until, (until - since) / BUCKETS)
            view.traffic.confidence_bins.extend([0] * CONFIDENCE_BINS)
        view.charts = charts(view.traffic, model.classes)
    view.decisions = view.decisions[-SHOWN:]
    return view


def charts(traffic: Traffic, classes: list[str]) -> dict[str, Markup]:
    span = (traffic.since, traffic.until)
    middles = [b.start + traffic.bucket_s / 2 for b in traffic.buckets]
    per_minute = [b.requests * 60 / traffic.bucket_s for b in traffic.buckets]
    latency = [
        ("p50", [b.latency.p50_ms for b in traffic.buckets]),
        ("p95", [b.latency.p95_ms for b in traffic.buckets]),
        ("p99", [b.latency.p99_ms for b in traffic.buckets]),
    ]
    mix = [traffic.class_mix.get(c, 0) for c in classes] + [
        n for c, n in traffic.class_mix.items() if c not in classes
    ]
    names = classes + [c for c in traffic.class_mix if c not in classes]
    total = max(sum(mix), 1)
    bins = len(traffic.confidence_bins)
    return {
        "requests": svg.time_lines(
            middles, [("requests / min", per_minute)], span, "requests per minute"
        ),
        "latency": svg.time_lines(middles, latency, span, "model time (ms)", " ms"),
        "confidence_time": svg.time_lines(
            middles,
            [("mean confidence", [b.mean_confidence for b in traffic.buckets])],
            span,
            "mean confidence",
        ),
        "class_mix": svg.bars(names, [100 * n / total for n in mix], "class mix", "%"),
        "confidence": svg.bars(
            [f"{i / bins:.2f}" for i in range(bins)],
            [float(n) for n in traffic.confidence_bins],
            "confidence histogram",
            color="#6a1b9a",
        ),
    }


def gather(
    models: list[tuple[str, LoadedModel]],
    settings: ServeSettings,
    store: TelemetryStore | None,
    hours: float,
    now: float | None = None,
) -> list[ModelView]:
    """Every served model's view, the live figures over the last ``hours``."""
    until = time.time() if now is None else now
    since = until - hours * 3600
    return [model_view(m, settings, store, since, until) for _, m in models]
