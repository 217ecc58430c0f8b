"""Promotion: making a trained model the one that serves.

Three records of the same fact, written in this order so that a failure leaves the old model
serving: the model folder copied to ``releases/<task>/<version>/`` (immutable: a DVC stage
re-run never touches it), the MLflow registry (a new version of the registered model, given
the ``production`` alias, when the model's run is in MLflow), and last the pointer file
(``releases/serving.json``) that servers watch and reload from, replaced atomically.
``releases/history.jsonl`` keeps every promotion with its reasons.

Nothing poisoned is promoted: the model folder must match every hash its manifest holds
(model, ONNX copy, reference: :func:`mltrail.models.loading.verify`) before it is copied, and
the copy is checked again. A release folder that already exists for the version is reused only
when it holds this very manifest and files matching it; otherwise (a tampered file, a manifest
that is not this one) it is copied anew from the verified model folder, said in the log and
the history (``replaced``): promoting the genuine model repairs a poisoned release instead of
"succeeding" onto it. The pointer's read-modify-write runs under its lock
(:func:`mltrail.contracts.pointer.update`), so two promotions at once both land.
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
from mltrail.contracts.pointer import Pointer, history_of, update
from mltrail.contracts.tasks import task_spec
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_dir
from mltrail.models.loading import ModelLoadError, verify

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


def registered_name(task: str, params: Params) -> str:
    """The MLflow registered model a ``task`` model is promoted under.

    ``retrain.registered_model`` names the model of ``retrain.task`` (the one the retrain loop
    promotes and servers follow as ``models:/<name>@<alias>``); a model of another task gets
    ``<tracking.experiment>-<task>``. One name for every task made promoting a CIFAR-10 model
    move the text model's alias, and every server following it load an image model as text.
    """
    if task == params.retrain.task:
        return params.retrain.registered_model
    return f"{params.tracking.experiment}-{task}"


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

    from mltrail.tracking.registry import connect_uri

    # The manifest holds the URI redacted; the credentials come from the environment.
    uri = _absolute(target)
    client = MlflowClient(connect_uri(uri))
    mlflow.set_tracking_uri(connect_uri(uri))
    name, alias = registered_name(manifest.task, params), params.retrain.alias
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


def _release_problem(release: Path, manifest: Manifest) -> str | None:
    """Why the existing ``release`` is not a copy of the model ``manifest`` describes; None
    when it is (the same manifest, every hashed file matching)."""
    try:
        held = verify(release)
    except ModelLoadError as exc:
        return exc.message
    if held != manifest:
        return f"{release}/manifest.json is not the promoted model's manifest"
    return None


def _copy_release(model_dir: Path, manifest: Manifest, release: Path) -> str | None:
    """``release`` holding a verified copy of ``model_dir``; the reason an existing one was
    replaced, or None."""
    replaced = None
    if release.is_dir():
        replaced = _release_problem(release, manifest)
        if replaced is None:
            return None
        log.warning("release %s is not the model it names (%s): copying it anew", release, replaced)
    with atomic_dir(release) as tmp:
        for entry in model_dir.iterdir():
            if entry.is_file():
                shutil.copy2(entry, tmp / entry.name)
    # The copy, checked again: a file changed between the check and the copy is not served.
    problem = _release_problem(release, manifest)
    if problem is not None:
        raise MltrailError(
            f"the release copy of {model_dir} does not match its manifest: {problem}",
            hint="check the model folder is not being written to, then promote again",
        )
    return replaced


def promote(model_dir: Path, params: Params, reasons: dict[str, Any]) -> dict[str, Any]:
    """Make ``model_dir`` (a verified model folder) the serving model of its task."""
    manifest = verify(model_dir)
    task = manifest.task
    kind = task_spec(task).kind
    version = manifest.model_version
    release = Path(params.retrain.releases_dir) / task / version.replace("@", "-")
    replaced = _copy_release(model_dir, manifest, release)
    registry = _register(release, manifest, params)
    pointer_path = Path(params.retrain.pointer_file)
    record: dict[str, Any] = {
        "time": time.time(),
        "task": task,
        "version": version,
        "release": str(release),
        "previous": None,
        "registry": registry,
        "git": manifest.git.to_json(),
        "data_sha256": manifest.data.content_sha256,
        "reasons": reasons,
    }
    if replaced is not None:
        record["replaced"] = replaced
    # Last: servers switch. Under the pointer's lock, so a promotion of another task at the
    # same moment is not lost.
    source = str(release.resolve())
    was = update(pointer_path, lambda pointer: pointer.with_source(kind, source))
    record["previous"] = was.source(kind)
    history = history_of(pointer_path)
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
