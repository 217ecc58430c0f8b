"""Stage ``clean_models``: remove what under ``models/`` no pipeline stage produces.

The paper's ``clean_models`` wiped the models so that training ran again. In DVC that is
already what happens (a stage's outputs are removed before it runs), and a stage that wipes
every time would make ``dvc repro`` never a no-op. So here it collects garbage instead: model
folders no stage of ``dvc.yaml`` declares as an output (renamed or removed stages, ad-hoc runs)
and the temporary folders an interrupted run left behind. DVC runs it when its code or params
change (it refuses ``dvc.yaml`` as a dependency); ``dvc repro -f clean_models`` or
``mltrail clean models`` run it at any time.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

import yaml

from mltrail.errors import MltrailError

log = logging.getLogger(__name__)


def declared_outputs(pipeline: Path) -> set[Path]:
    """Every ``outs``/``metrics``/``plots`` path of the stages in ``pipeline`` (dvc.yaml)."""
    try:
        spec = yaml.safe_load(pipeline.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MltrailError(f"cannot read the pipeline {pipeline}: {exc}") from None
    root = pipeline.parent
    outputs: set[Path] = set()
    for stage in (spec.get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                name = next(iter(entry)) if isinstance(entry, dict) else entry
                if isinstance(name, str) and "${" not in name:  # templated paths: not resolved
                    outputs.add((root / name).resolve())
    return outputs


def stale_entries(models_dir: Path, keep: Iterable[Path]) -> list[Path]:
    """Entries under ``models_dir`` that are neither kept, inside a kept path, nor above one."""
    kept = {p.resolve() for p in keep}
    if not models_dir.is_dir():
        return []
    stale: list[Path] = []

    def visit(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            full = entry.resolve()
            if full in kept:
                continue
            if any(k.is_relative_to(full) for k in kept) and entry.is_dir():
                visit(entry)  # a parent of something kept: look inside
            elif not any(full.is_relative_to(k) for k in kept):
                stale.append(entry)

    visit(models_dir)
    return stale


def clean_models(
    models_dir: Path, pipeline: Path, keep: Iterable[str] = (), dry_run: bool = False
) -> list[Path]:
    """Remove stale entries under ``models_dir``; return them (only list them if ``dry_run``)."""
    kept = declared_outputs(pipeline) | {models_dir / k for k in keep}
    stale = stale_entries(models_dir, kept)
    for entry in stale:
        log.info("%s %s", "would remove" if dry_run else "removing", entry)
        if dry_run:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return stale
