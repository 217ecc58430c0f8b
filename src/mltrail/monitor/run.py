"""``mltrail monitor``: one check of the serving model against its reference.

The window is the newest ``monitor.window`` predictions *of that model version* (traffic
served by an earlier or later model says nothing about this one); the report's timeline shows
the recent history of the endpoint across versions.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from mltrail.config import MonitorParams, Task
from mltrail.contracts.manifest import Manifest
from mltrail.contracts.tasks import task_spec
from mltrail.errors import MltrailError
from mltrail.models.reference import Reference
from mltrail.monitor.audit import audit_latency, read_history
from mltrail.monitor.policy import Check, check_window
from mltrail.monitor.report import write_outputs
from mltrail.monitor.summary import summarize
from mltrail.telemetry import open_store, read_window

HISTORY = 3000  # predictions shown on the report's timeline


@dataclass
class MonitoredModel:
    source: str
    manifest: Manifest
    reference: Reference

    @property
    def task(self) -> Task:
        return self.manifest.task

    @property
    def version(self) -> str:
        return self.manifest.model_version


def monitored_model(source: str) -> MonitoredModel:
    """The model a server runs from ``source`` (folder or MLflow URI), with its reference."""
    from mltrail.models.loading import load_verified_reference, local_copy, verify

    # An MLflow download is removed once read: the manifest and reference live in memory.
    with local_copy(source) as model_dir:
        manifest = verify(model_dir)
        # Verified like the model file, as the server does: the same reference it projects with.
        reference = load_verified_reference(model_dir, manifest)
    if reference is None:
        raise MltrailError(
            f"{source} was trained without a monitoring reference",
            hint="retrain it with this version of mltrail (`dvc repro`)",
        )
    return MonitoredModel(source, manifest, reference)


def run_check(
    store: str,
    model: MonitoredModel,
    params: MonitorParams,
    out_dir: Path | None,
    releases_history: Path | None = None,
) -> Check:
    """``releases_history``: ``releases/history.jsonl``, where the version the model replaced
    is looked up for the latency audit (else: the telemetry order)."""
    endpoint = task_spec(model.task).endpoint
    window = read_window(store, endpoint=endpoint, limit=params.window, model_version=model.version)
    promotions = read_history(releases_history, model.task) if releases_history else []
    with closing(open_store(store)) as opened:
        regression = audit_latency(opened, endpoint, model.version, params, promotions)
    check = check_window(window, model.reference, params, model.version, regression=regression)
    if out_dir is not None:
        history = read_window(store, endpoint=endpoint, limit=HISTORY)
        write_outputs(out_dir, check, model.task, model.reference, window, history)
        # The condensed view of the same window, beside the check.
        from mltrail.fsio import write_json

        write_json(out_dir / "summary.json", summarize(window, len(model.reference.classes)))
    return check
