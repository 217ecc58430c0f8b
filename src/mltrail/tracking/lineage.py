"""A model's lineage: measuring what produced it (for its manifest, whose record is
:mod:`mltrail.contracts.manifest`), and ``mltrail lineage``: the manifest, the check of every
file it hashes, the tracker exports and the promotions.

git commit (and whether the tree was dirty) -> params and their hash -> the prepared data's
hashes -> the model file's sha256 -> tracker run ids -> (later) image tag and production.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from mltrail.config import Task
from mltrail.contracts.layout import PROFILE_FILE
from mltrail.contracts.manifest import (
    SCHEMA_VERSION,
    DataRecord,
    GitState,
    Host,
    Manifest,
    ModelInfo,
    ModelRecord,
    TrackingRefs,
)
from mltrail.contracts.tasks import Flavor
from mltrail.fsio import dumps_json, read_json_lines, sha256_file
from mltrail.tracking.journal import read_state

LIBRARIES = (
    "mltrail",
    "numpy",
    "pandas",
    "scikit-learn",
    "torch",
    "mlflow",
    "wandb",
    "dvc",
)


DIRTY_FILES_MAX = 50
"""At most this many changed files are named in a manifest (``dirty_files_total`` counts all)."""


def written_by_dvc(path: str) -> bool:
    """Files DVC itself rewrites while ``dvc repro`` / ``dvc add`` run: ``dvc.lock`` (after
    every stage), ``*.dvc`` (``dvc add``, e.g. feedback batches) and ``.gitignore`` (the
    outputs it adds there). They are left out of the dirty check: the first two record hashes
    of data and outputs, which the manifest records itself (data, params, model hashes), and a
    ``.gitignore`` changes nothing a stage computes. Otherwise every model the pipeline trains
    would say "dirty tree", whatever the source."""
    name = PurePosixPath(path).name
    return name in ("dvc.lock", ".gitignore") or name.endswith(".dvc")


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """The commit, whether tracked files differ from it (ignoring what DVC writes: see
    ``written_by_dvc``), and the files that do (``dirty_files``, at most DIRTY_FILES_MAX);
    ``None`` values outside a git repository or without git."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain=v1", "-z", "--untracked-files=no")
    if status is None:
        return {"commit": commit and commit.strip(), "dirty": None, "dirty_files": None}
    changed = [p for p in _porcelain_paths(status) if not written_by_dvc(p)]
    state: dict[str, Any] = {
        "commit": commit and commit.strip(),
        "dirty": bool(changed),
        "dirty_files": changed[:DIRTY_FILES_MAX],
    }
    if len(changed) > DIRTY_FILES_MAX:
        state["dirty_files_total"] = len(changed)
    return state


def _porcelain_paths(status: str) -> list[str]:
    """The paths of ``git status --porcelain=v1 -z`` (a rename names both its paths)."""
    entries = status.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":  # renamed or copied: the next entry is the original path
            paths.append(entries[i])
            i += 1
    return sorted(set(paths))


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(dumps_json(params).encode()).hexdigest()


def data_hashes(data_dir: Path) -> DataRecord:
    """The prepared data a model was trained on: its profile's content hash and file hashes."""
    profile_path = data_dir / PROFILE_FILE
    profile = json.loads(profile_path.read_text()) if profile_path.is_file() else {}
    return DataRecord(
        path=str(data_dir),
        content_sha256=profile.get("content_sha256"),
        source_sha256=(profile.get("source") or {}).get("sha256"),
        files={p.name: sha256_file(p) for p in sorted(data_dir.iterdir()) if p.is_file()},
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(
    *,
    task: Task,
    stage: str,
    params: Mapping[str, Any],
    data_dir: Path,
    model_file: Path,
    tracking: Mapping[str, Any],
    metrics: Mapping[str, float],
    timings: Mapping[str, float],
    flavor: Flavor,
    model_info: ModelInfo,
) -> Manifest:
    """The manifest of a model trained now, here: git state, library versions and host
    measured, the data and the model file hashed."""
    return Manifest(
        schema_version=SCHEMA_VERSION,
        task=task,
        stage=stage,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        git=GitState.model_validate(git_state()),
        params=dict(params),
        params_sha256=params_hash(params),
        data=data_hashes(data_dir),
        model=ModelRecord(
            file=model_file.name, sha256=sha256_file(model_file), flavor=flavor, info=model_info
        ),
        tracking=TrackingRefs.model_validate(tracking),
        metrics=dict(metrics),
        timings=dict(timings),
        libraries=library_versions(),
        host=Host(machine=platform.machine(), system=platform.system()),
    )


def check_files(model_dir: Path, manifest: Manifest) -> list[dict[str, Any]]:
    """Every file of the model folder the manifest hashes (the model file, and the ONNX copy
    and the monitoring reference when it names them), with ``status`` ``matches``,
    ``differs`` or ``missing``."""
    checked = []
    for role, entry in manifest.model.hashed_files().items():
        status, actual = entry.check(model_dir)
        checked.append(
            {
                "role": role,
                "file": entry.file,
                "sha256": entry.sha256,
                "actual_sha256": actual,
                "status": status,
            }
        )
    return checked


def lineage(model_dir: Path, history: Path = Path("releases/history.jsonl")) -> dict[str, Any]:
    """A model's trail, machine-readable: its manifest, the check of every file the manifest
    hashes (``check.ok``), the state of each tracker export and its promotions."""
    manifest = Manifest.read(model_dir)
    files = check_files(model_dir, manifest)
    journal = manifest.tracking.journal
    exports = {
        backend: read_state(Path(journal), backend) if journal else None
        for backend in manifest.tracking.backends
    }
    return {
        "model_dir": str(model_dir),
        "version": manifest.model_version,
        "manifest": manifest.to_json(),
        "check": {"ok": all(f["status"] == "matches" for f in files), "files": files},
        "exports": exports,
        "promotions": _promotions(manifest, history),
    }


def describe(model_dir: Path, history: Path = Path("releases/history.jsonl")) -> str:
    """The chain from commit to tracker runs and promotions, as text for a person."""
    return render(lineage(model_dir, history))


def render(trail: Mapping[str, Any]) -> str:
    """``lineage()`` as text for a person."""
    m = trail["manifest"]
    git = m["git"]
    data = m["data"]
    dirty = ""
    if git.get("dirty"):
        names = git.get("dirty_files") or []
        total = git.get("dirty_files_total", len(names))
        more = f" and {total - 3} more" if total > 3 else ""
        dirty = f" (dirty tree: {', '.join(names[:3])}{more})" if names else " (dirty tree)"
    lines = [
        f"model     {trail['model_dir']} ({m['task']}, stage {m['stage']}, {m['created_at']})",
        f"version   {trail['version']} (covers every file below)",
        f"commit    {git['commit'] or 'unknown'}{dirty}",
        f"params    sha256 {m['params_sha256'][:16]}  {json.dumps(m['params'], sort_keys=True)}",
        f"data      {data['path']}  content sha256 {str(data['content_sha256'])[:16]}",
    ]
    for f in trail["check"]["files"]:
        verdict = {
            "matches": "matches the file",
            "differs": "DOES NOT MATCH the file",
            "missing": "the file is MISSING",
        }[f["status"]]
        label = "model" if f["role"] == "model" else f"  {f['role']}"
        lines.append(f"{label:<9} {f['file']} sha256 {f['sha256'][:16]} ({verdict})")
    lines.append("metrics   " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(m["metrics"].items())))
    tracking = m["tracking"]
    if not tracking.get("backends"):
        lines.append("tracking  none")
    for backend, target in tracking.get("backends", {}).items():
        state = trail["exports"].get(backend)
        if state is None:
            where = "export not finished yet"
        elif state["status"] == "done":
            where = f"run {state['run_id']} at {state.get('uri')}"
        else:
            where = f"export pending ({state.get('error')}); run `mltrail tracking sync`"
        lines.append(f"tracking  {backend} ({target}): {where}")
    for record in trail["promotions"]:
        registry = record.get("registry") or {}
        where = f", MLflow {registry['name']} v{registry['version']}" if registry else ""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record["time"]))
        why = record.get("reasons", {}).get("why") or ", ".join(record.get("reasons", {}))
        lines.append(f"promoted  {stamp} to {record['release']}{where} ({why})")
    return "\n".join(lines)


def _promotions(manifest: Manifest, history: Path) -> list[dict[str, Any]]:
    """Where the model went after training: its promotions (``mltrail promote`` / ``retrain``)
    from the releases history, with the MLflow registry version and why."""
    version = manifest.model_version
    return [r for r in read_json_lines(history) if r.get("version") == version]
