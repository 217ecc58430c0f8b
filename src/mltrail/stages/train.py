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
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_dir, sha256_file, write_json
from mltrail.lineage import MANIFEST, build_manifest
from mltrail.tracking.base import Flavor, ModelRef
from mltrail.tracking.run import Reservation, TrackedRun, open_run

METRICS = "metrics.json"


@dataclass(frozen=True)
class Fitted:
    """What a stage's ``fit`` wrote into the output folder, and what it measured."""

    model_file: str
    flavor: Flavor
    metrics: dict[str, float]
    artifacts: list[str]
    model_info: dict[str, Any] = field(default_factory=dict)
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


def tracker_label(spec: str) -> str:
    return spec.replace(",", "+").replace("://", "-").replace("/", "-")


def require_prepared(data_dir: Path, files: list[str], stage: str) -> None:
    missing = [f for f in files if not (data_dir / f).is_file()]
    if missing:
        raise MltrailError(
            f"{data_dir} lacks {', '.join(missing)}: it is not prepared data",
            hint=f"run `dvc repro {stage}` (or mltrail prepare) first, or fix --data",
        )


def run_training(
    *,
    task: str,
    tracker: str | Reservation,
    params: Params,
    section: BaseModel,
    data_dir: Path,
    out_dir: Path,
    fit: Fit,
) -> dict[str, Any]:
    """Train with ``fit`` under ``tracker`` (a spec, or a run reserved earlier, see
    :func:`mltrail.tracking.run.reserve_run`); write ``out_dir`` whole or not at all."""
    started = time.perf_counter()
    spec = tracker if isinstance(tracker, str) else tracker.spec
    stage = f"train_{task}_{tracker_label(spec)}"
    section_params = section.model_dump(mode="json")
    with open_run(tracker, params.tracking, run_name=stage, tags={"task": task}) as run:
        run.log_params(flatten(section_params))
        with atomic_dir(out_dir) as tmp:
            fitted = fit(run, tmp)
            model_path = tmp / fitted.model_file
            manifest = build_manifest(
                task=task,
                stage=stage,
                params=section_params,
                data_dir=data_dir,
                model_file=model_path,
                tracking=run.refs(),
                metrics=fitted.metrics,
                timings=fitted.timings | {"stage_s": time.perf_counter() - started},
                flavor=fitted.flavor,
                model_info=fitted.model_info,
            )
            write_json(tmp / METRICS, fitted.metrics)
            write_json(tmp / MANIFEST, manifest)
        run.set_tags(
            {
                "git_commit": str(manifest["git"]["commit"]),
                "data_sha256": str(manifest["data"]["content_sha256"]),
            }
        )
        run.log_metrics(fitted.metrics)
        for name in [*fitted.artifacts, MANIFEST]:
            run.log_artifact(out_dir / name)
        run.log_model(
            ModelRef(
                path=out_dir,
                flavor=fitted.flavor,
                file=fitted.model_file,
                sha256=sha256_file(out_dir / fitted.model_file),
                info=fitted.model_info,
            )
        )
    return manifest
