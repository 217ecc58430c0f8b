"""Promotion: making a trained model the one that serves.

Three records of the same fact, written in this order so that a failure leaves the old model
serving: the model folder copied to ``releases/<task>/<version>/`` (immutable: a DVC stage
re-run never touches it), the MLflow registry (a new version of the registered model, given
the ``production`` alias, when the model's run is in MLflow), and last the pointer file
(``releases/serving.json``) that servers watch and reload from, replaced atomically.
``releases/history.jsonl`` keeps every promotion with its reasons.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from mltrail.config import Params
from mltrail.contracts.manifest import Manifest
from mltrail.contracts.pointer import Pointer
from mltrail.contracts.tasks import task_spec
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_dir
from mltrail.models.loading import verify

log = logging.getLogger(__name__)


def serving_source(params: Params, task: str) -> str:
    pointer = Pointer.read(Path(params.retrain.pointer_file))
    source = pointer.source(task_spec(task).kind)
    if not source:
        raise MltrailError(
            f"no {task} model is promoted yet ({params.retrain.pointer_file} names none)",
            hint=f"promote one first: mltrail promote models/{task}/<tracker>",
        )
    return source


def _absolute(uri: str) -> str:
    """``sqlite:///mlflow.db`` is relative to the working directory, and MLflow caches one
    store per URI string for the process: make it absolute, so that a process that changed
    directory (a loop, a test run) cannot reach the wrong database through the cache."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


def _register(model_dir: Path, manifest: Manifest, params: Params) -> dict[str, Any]:
    """Register the model's MLflow run output and move the alias to it; {} when the model
    was not tracked in MLflow (the pointer alone then records the promotion)."""
    from mltrail.tracking.journal import read_state
    from mltrail.tracking.run import wait_for_export

    journal = manifest.tracking.journal
    target = manifest.tracking.backends.get("mlflow")
    if not journal or target is None:
        return {}
    states = wait_for_export(Path(journal), ["mlflow"])
    state = states["mlflow"] or read_state(Path(journal), "mlflow") or {}
    if state.get("status") != "done":
        raise MltrailError(
            f"the MLflow export of {model_dir} is {state.get('status')}: cannot register it",
            hint="run `mltrail tracking sync`, then promote again",
        )
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = _absolute(target)
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    name, alias = params.retrain.registered_model, params.retrain.alias
    run_id = state["run_id"]
    # The MLflow flavor ("model", what MLflow's UI and `mlflow models serve` use); mltrail's
    # own files sit beside it in the same run (``mltrail-model``), which `mltrail serve`
    # fetches for ``models:/<name>@<alias>``.
    found = mlflow.register_model(f"runs:/{run_id}/model", name)
    client.set_registered_model_alias(name, alias, found.version)
    client.set_model_version_tag(name, found.version, "mltrail.version", manifest.model_version)
    return {
        "tracking_uri": uri,
        "name": name,
        "version": str(found.version),
        "alias": alias,
        "run_id": run_id,
        "uri": f"models:/{name}@{alias}",
    }


def promote(model_dir: Path, params: Params, reasons: dict[str, Any]) -> dict[str, Any]:
    """Make ``model_dir`` (a verified model folder) the serving model of its task."""
    manifest = verify(model_dir)
    task = manifest.task
    kind = task_spec(task).kind
    version = manifest.model_version
    release = Path(params.retrain.releases_dir) / task / version.replace("@", "-")
    if not release.is_dir():
        with atomic_dir(release) as tmp:
            for entry in model_dir.iterdir():
                if entry.is_file():
                    shutil.copy2(entry, tmp / entry.name)
    verify(release)
    registry = _register(release, manifest, params)
    pointer_path = Path(params.retrain.pointer_file)
    pointer = Pointer.read(pointer_path)
    previous = pointer.source(kind)
    record = {
        "time": time.time(),
        "task": task,
        "version": version,
        "release": str(release),
        "previous": previous,
        "registry": registry,
        "git": manifest.git.to_json(),
        "data_sha256": manifest.data.content_sha256,
        "reasons": reasons,
    }
    pointer.with_source(kind, str(release.resolve())).write(pointer_path)  # last: servers switch
    history = pointer_path.parent / "history.jsonl"
    with history.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    log.info("promoted %s model %s (%s)", task, version, release)
    return record


def reload_server(
    url: str, task: str, source: str, api_key: str | None, timeout_s: float = 60
) -> str:
    """Ask a server to load ``source`` now and wait until /version shows it (the pointer
    watcher would do the same within a second; this makes the loop's record exact)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    kind = task_spec(task).kind
    with httpx.Client(base_url=url, headers=headers, timeout=timeout_s) as client:
        response = client.post("/admin/reload", json={f"{kind}_model": source})
        if response.status_code != 200:
            raise MltrailError(f"{url} refused the reload: {response.status_code} {response.text}")
        return str(response.json()["reloaded"][kind])
