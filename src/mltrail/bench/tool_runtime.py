"""The runtime each tracking tool itself recorded for a run, read from the tool's own store.

- MLflow: the run's ``end_time - start_time`` in its tracking store (what its UI shows as
  Duration), read with ``MlflowClient``. mltrail's exporter gives MLflow the training's own
  start and end times, so this is the training's duration, not the export's.
- W&B: the ``_runtime`` of the run's summary in its run file (``wandb/offline-run-*``, what its
  UI shows as Runtime, in whole seconds), read with W&B's own reader, ``wandb leet inspect``.
  W&B takes a run's start from ``wandb.init`` and accepts no other; mltrail's exporter calls
  it as the training's run begins (it started with the training process), so this spans the
  training's run up to the end of its export. The training's own times are in the run's
  summary (``train_time_s``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def mlflow_runtime_s(tracking_uri: str, run_id: str) -> float:
    from mlflow.tracking import MlflowClient

    info = MlflowClient(tracking_uri).get_run(run_id).info
    if info.end_time is None or info.status != "FINISHED":
        raise ValueError(f"MLflow run {run_id} is {info.status}, not FINISHED")
    return (int(info.end_time) - int(info.start_time)) / 1000


def wandb_inspect(run_dir: Path) -> dict[str, Any]:
    """The run's summary as W&B reads it from its run file: state, exit_code, config,
    summary, tags, start_time."""
    wandb = Path(sys.executable).parent / "wandb"
    done = subprocess.run(
        [str(wandb), "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise ValueError(f"wandb leet inspect {run_dir} failed: {done.stderr.strip()[-500:]}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def wandb_runtime_s(run_dir: Path) -> float:
    """The run's ``_runtime`` (seconds); the run must have finished with exit code 0."""
    found = wandb_inspect(run_dir)
    if found.get("state") != "finished" or found.get("exit_code") != 0:
        raise ValueError(
            f"the W&B run in {run_dir} is {found.get('state')} (exit code {found.get('exit_code')})"
        )
    return float(found["summary"]["_runtime"])
