"""What every training stage shares: the tracked run, atomic outputs, the lineage manifest.

One code path whatever the tracker: the stage's ``fit`` trains and writes its files, this
harness journals params, metrics, artifacts and the model to the chosen trackers (``none``
writes nothing) and records the final status, also when ``fit`` raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mltrail.config import Params
from mltrail.contracts.layout import MANIFEST_FILE, METRICS_FILE
from mltrail.contracts.manifest import Manifest, ModelInfo
from mltrail.contracts.tasks import TaskSpec, train_stage
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_dir, sha256_file, write_json
from mltrail.tracking.base import ModelRef
from mltrail.tracking.lineage import build_manifest
from mltrail.tracking.run import Reservation, TrackedRun, open_run


@dataclass(frozen=True)
class Fitted:
    """What a stage's ``fit`` wrote into the output folder, and what it measured."""

    metrics: dict[str, float]
    artifacts: list[str]
    model_info: ModelInfo
    """What serving needs (recorded in the manifest)."""
    requirements: list[str] = field(default_factory=list)
    """pip requirements of the model's MLflow flavor (given to the trackers, not recorded)."""
    timings: dict[str, float] = field(default_factory=dict)


Fit = Callable[[TrackedRun, Path], Fitted]


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def require_prepared(data_dir: Path, task: TaskSpec) -> None:
    missing = task.prepared.missing(data_dir)
    if missing:
        raise MltrailError(
            f"{data_dir} lacks {', '.join(missing)}: it is not prepared data",
            hint=f"run `dvc repro {task.prepare_stage}` (or mltrail prepare) first, or fix --data",
        )


def run_training(
    *,
    task: TaskSpec,
    tracker: str | Reservation,
    params: Params,
    section: BaseModel,
    data_dir: Path,
    out_dir: Path,
    fit: Fit,
    stage: str | None = None,
) -> Manifest:
    """Train with ``fit`` under ``tracker`` (a spec, or a run reserved earlier, see
    :func:`mltrail.tracking.run.reserve_run`); write ``out_dir`` whole or not at all.

    ``stage``: the DVC stage this is (recorded in the manifest, part of the model's version);
    by default the name dvc.yaml gives the task under this tracker (``train_stage``)."""
    started = time.perf_counter()
    spec = tracker if isinstance(tracker, str) else tracker.spec
    stage = stage or train_stage(task.task, spec)
    section_params = section.model_dump(mode="json")
    with open_run(tracker, params.tracking, run_name=stage, tags={"task": task.task}) as run:
        run.log_params(flatten(section_params))
        with atomic_dir(out_dir) as tmp:
            fitted = fit(run, tmp)
            manifest = build_manifest(
                task=task.task,
                stage=stage,
                params=section_params,
                data_dir=data_dir,
                model_file=tmp / task.model_file,
                tracking=run.refs(),
                metrics=fitted.metrics,
                timings=fitted.timings | {"stage_s": time.perf_counter() - started},
                flavor=task.flavor,
                model_info=fitted.model_info,
            )
            write_json(tmp / METRICS_FILE, fitted.metrics)
            manifest.write(tmp)
        run.set_tags(
            {
                "git_commit": str(manifest.git.commit),
                "data_sha256": str(manifest.data.content_sha256),
            }
        )
        run.log_metrics(fitted.metrics)
        for name in [*fitted.artifacts, MANIFEST_FILE]:
            run.log_artifact(out_dir / name)
        run.log_model(
            ModelRef(
                path=out_dir,
                flavor=task.flavor,
                file=task.model_file,
                sha256=sha256_file(out_dir / task.model_file),
                info=fitted.model_info.to_json() | {"pip_requirements": fitted.requirements},
            )
        )
    return manifest
