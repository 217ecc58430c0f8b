"""The lineage manifest: what produced a model, written beside it as ``manifest.json``.

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
from pathlib import Path
from typing import Any

from mltrail.errors import MltrailError
from mltrail.fsio import dumps_json, sha256_file
from mltrail.tracking.journal import read_state

MANIFEST = "manifest.json"
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


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(dumps_json(params).encode()).hexdigest()


def data_hashes(data_dir: Path) -> dict[str, Any]:
    """The prepared data a model was trained on: its profile's content hash and file hashes."""
    profile_path = data_dir / "profile.json"
    profile = json.loads(profile_path.read_text()) if profile_path.is_file() else {}
    return {
        "path": str(data_dir),
        "content_sha256": profile.get("content_sha256"),
        "source_sha256": (profile.get("source") or {}).get("sha256"),
        "files": {p.name: sha256_file(p) for p in sorted(data_dir.iterdir()) if p.is_file()},
    }


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
    task: str,
    stage: str,
    params: Mapping[str, Any],
    data_dir: Path,
    model_file: Path,
    tracking: Mapping[str, Any],
    metrics: Mapping[str, float],
    timings: Mapping[str, float],
    flavor: str = "",
    model_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "task": task,
        "stage": stage,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "params": dict(params),
        "params_sha256": params_hash(params),
        "data": data_hashes(data_dir),
        "model": {
            "file": model_file.name,
            "sha256": sha256_file(model_file),
            "flavor": flavor,
            # What serving needs to load and answer: classes, architecture, input format.
            "info": {k: v for k, v in (model_info or {}).items() if k != "pip_requirements"},
        },
        "tracking": dict(tracking),
        "metrics": dict(metrics),
        "timings": dict(timings),
        "libraries": library_versions(),
        "host": {"machine": platform.machine(), "system": platform.system()},
    }


def model_version(manifest: Mapping[str, Any]) -> str:
    """``<stage>@<first 12 hex of the model file's sha256>``: what the server, telemetry, the
    monitor, the registry tags and the releases call a model."""
    return f"{manifest.get('stage', manifest['task'])}@{manifest['model']['sha256'][:12]}"


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise MltrailError(
            f"{model_dir} has no {MANIFEST}", hint="is it a model folder written by mltrail train?"
        ) from None
    return manifest


def describe(model_dir: Path, history: Path = Path("releases/history.jsonl")) -> str:
    """The chain from commit to tracker runs and promotions, as text for a person."""
    m = read_manifest(model_dir)
    git = m["git"]
    data = m["data"]
    model_file = model_dir / m["model"]["file"]
    intact = model_file.is_file() and sha256_file(model_file) == m["model"]["sha256"]
    lines = [
        f"model     {model_dir} ({m['task']}, stage {m['stage']}, {m['created_at']})",
        f"commit    {git['commit'] or 'unknown'}{' (dirty tree)' if git['dirty'] else ''}",
        f"params    sha256 {m['params_sha256'][:16]}  {json.dumps(m['params'], sort_keys=True)}",
        f"data      {data['path']}  content sha256 {str(data['content_sha256'])[:16]}",
        f"model     {m['model']['file']} sha256 {m['model']['sha256'][:16]} "
        f"({'matches the file' if intact else 'DOES NOT MATCH the file'})",
        "metrics   " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(m["metrics"].items())),
    ]
    tracking = m["tracking"]
    if not tracking.get("backends"):
        lines.append("tracking  none")
    for backend, target in tracking.get("backends", {}).items():
        state = read_state(Path(tracking["journal"]), backend) if tracking.get("journal") else None
        if state is None:
            where = "export not finished yet"
        elif state["status"] == "done":
            where = f"run {state['run_id']} at {state.get('uri')}"
        else:
            where = f"export pending ({state.get('error')}); run `mltrail tracking sync`"
        lines.append(f"tracking  {backend} ({target}): {where}")
    lines += _promotions(m, history)
    return "\n".join(lines)


def _promotions(manifest: dict[str, Any], history: Path) -> list[str]:
    """Where the model went after training: its promotions (``mltrail promote`` / ``retrain``)
    from the releases history, with the MLflow registry version and why."""
    if not history.is_file():
        return []
    version = model_version(manifest)
    lines = []
    for line in history.read_text().splitlines():
        record = json.loads(line)
        if record.get("version") != version:
            continue
        registry = record.get("registry") or {}
        where = f", MLflow {registry['name']} v{registry['version']}" if registry else ""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record["time"]))
        why = record.get("reasons", {}).get("why") or ", ".join(record.get("reasons", {}))
        lines.append(f"promoted  {stamp} to {record['release']}{where} ({why})")
    return lines
