"""``mltrail monitor``: one check of the serving model against its reference.

The window is the newest ``monitor.window`` predictions *of that model version* (traffic
served by an earlier or later model says nothing about this one); the report's timeline shows
the recent history of the endpoint across versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltrail.config import MonitorParams
from mltrail.errors import MltrailError
from mltrail.lineage import model_version
from mltrail.monitor.policy import Check, check_window
from mltrail.monitor.reference import Reference
from mltrail.monitor.report import write_outputs
from mltrail.monitor.summary import summarize
from mltrail.telemetry import read_window

ENDPOINTS = {"text": "/predict/text", "cifar10": "/predict/image"}
HISTORY = 3000  # predictions shown on the report's timeline


@dataclass
class MonitoredModel:
    source: str
    task: str
    version: str
    manifest: dict[str, Any]
    reference: Reference


def monitored_model(source: str) -> MonitoredModel:
    """The model a server runs from ``source`` (folder or MLflow URI), with its reference."""
    from mltrail.serve.loading import load_verified_reference, resolve, verify

    model_dir = resolve(source)
    manifest = verify(model_dir)
    # Verified like the model file, as the server does: the same reference it projects with.
    reference = load_verified_reference(model_dir, manifest)
    if reference is None:
        raise MltrailError(
            f"{source} was trained without a monitoring reference",
            hint="retrain it with this version of mltrail (`dvc repro`)",
        )
    return MonitoredModel(source, manifest["task"], model_version(manifest), manifest, reference)


def run_check(
    store: str, model: MonitoredModel, params: MonitorParams, out_dir: Path | None
) -> Check:
    endpoint = ENDPOINTS[model.task]
    window = read_window(store, endpoint=endpoint, limit=params.window,
                         model_version=model.version)  # fmt: skip
    check = check_window(window, model.reference, params, model.version)
    if out_dir is not None:
        history = read_window(store, endpoint=endpoint, limit=HISTORY)
        write_outputs(out_dir, check, model.task, model.reference, window, history)
        # The condensed view of the same window, beside the check.
        from mltrail.fsio import write_json

        write_json(out_dir / "summary.json", summarize(window))
    return check
