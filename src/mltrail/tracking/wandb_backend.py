"""Weights & Biases backend: the real client, offline by default.

Offline runs land in ``<wandb_dir>/wandb/offline-run-*``; ``wandb sync <that folder>`` uploads
them when a network is there. W&B's own caches and artifact staging are kept under
``<wandb_dir>/wandb/`` too, not in the home folder.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from mltrail.paths import keep_wandb_files_in
from mltrail.tracking.base import ModelRef, RunStart, Status

_EXIT_CODES = {"finished": 0, "failed": 1, "killed": 130}


class WandbTracker:
    name: ClassVar[str] = "wandb"

    def __init__(self, project: str, mode: Literal["offline", "online"], wandb_dir: str) -> None:
        self.project = project
        self.mode = mode
        self.dir = Path(wandb_dir).resolve()
        keep_wandb_files_in(self.dir)
        import wandb

        self._wandb = wandb
        self.run: Any = None

    def start(self, run: RunStart) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = self._wandb.init(
            project=self.project,
            id=run.run_id,
            name=run.run_name,
            group=run.experiment,
            dir=str(self.dir),
            mode=self.mode,
            tags=[f"{k}={v}" for k, v in run.tags.items()][:20],
            config={},
            reinit="create_new",
            # The exporter's own output (MLflow's warnings, say) is not the training's console.
            settings=self._wandb.Settings(console="off"),
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None, timestamp: float) -> None:
        if step is None:  # final values: the run's summary
            self.run.summary.update(dict(metrics))
        else:  # per-step values: its history
            self.run.log(dict(metrics), step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.run.tags = (*self.run.tags, *(f"{k}={v}" for k, v in tags.items()))

    def log_artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def log_model(self, model: ModelRef) -> None:
        artifact = self._wandb.Artifact(
            name=re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.run.name}-model"),
            type="model",
            metadata={
                "flavor": model.flavor,
                "file": model.file,
                "sha256": model.sha256,
                **dict(model.info),
            },
        )
        artifact.add_dir(str(model.path))
        self.run.log_artifact(artifact)

    def finish(self, status: Status, end_time: float) -> dict[str, str]:
        run_dir = str(Path(self.run.dir).parent)  # .../wandb/offline-run-<time>-<id>
        url = self.run.url if self.mode == "online" else run_dir
        run_id = self.run.id
        self.run.finish(exit_code=_EXIT_CODES[status])
        return {"run_id": run_id, "uri": url or run_dir, "run_dir": run_dir, "mode": self.mode}

    def abort(self) -> None:
        if self.run is not None:
            with contextlib.suppress(Exception):
                self.run.finish(exit_code=1)
            self.run = None
