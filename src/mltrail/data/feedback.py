"""Labelled production data: batches written by ``mltrail retrain``, read by the prepare stages.

A feedback folder (``data/feedback/<task>``, in git with its README) holds one pair of files
per batch: ``train-<stamp>.*`` joins the training split at the next ``prepare`` and
``eval-<stamp>.*`` is kept out of training, to compare models on recent traffic. Each file is
tracked by DVC (``dvc add``: its ``.dvc`` file goes to git, the data to the DVC cache and
remote), and the folder is a dependency of the prepare stage, so a new batch re-runs exactly
the stages it affects and ``dvc.lock`` records which batches a model saw.

Text batches are Parquet (``text``, ``label`` as class index, ``recent``); image batches are
NPZ (``x`` uint8 N x 3 x 32 x 32, ``y``, ``recent``). ``recent`` marks the rows served since
the monitor first saw the shift: the traffic as it is now, which held-out ``recent`` rows
stand for when models are evaluated and monitored (older rows still train).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mltrail.contracts.tasks import task_spec
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_file, sha256_file


def _check_pulled(folder: Path) -> None:
    """A batch whose ``.dvc`` file is here but whose data is not: training without it would
    silently drop labelled data."""
    missing = [
        p.name.removesuffix(".dvc")
        for p in sorted(folder.glob("*.dvc"))
        if not p.with_suffix("").exists()
    ]
    if missing:
        raise MltrailError(
            f"{folder} lists feedback batches whose data is not here: {', '.join(missing)}",
            hint="fetch them with `dvc pull` (or `mltrail dvc pull`) before preparing",
        )


def batch_files(folder: Path | None, task: str, part: str = "train") -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    _check_pulled(folder)
    return sorted(folder.glob(f"{part}-*{task_spec(task).prepared.suffix}"))


def provenance(files: Sequence[Path]) -> dict[str, Any]:
    return {"batches": {p.name: sha256_file(p) for p in files}}


def read_text_batches(files: Sequence[Path], recent_only: bool = False) -> pd.DataFrame:
    frames = []
    for path in files:
        frame = pd.read_parquet(path)
        if recent_only and "recent" in frame:
            frame = frame[frame["recent"]]
        frames.append(frame[["text", "label"]])
    if not frames:
        return pd.DataFrame({"text": pd.Series(dtype=str), "label": pd.Series(dtype=np.int64)})
    return pd.concat(frames, ignore_index=True).astype({"label": np.int64})


def read_image_batches(
    files: Sequence[Path], recent_only: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    xs, ys = [], []
    for path in files:
        with np.load(path, allow_pickle=False) as z:
            keep = z["recent"] if recent_only and "recent" in z else slice(None)
            xs.append(z["x"][keep].astype(np.float32) / 255.0)
            ys.append(z["y"][keep].astype(np.int64))
    if not xs:
        return np.zeros((0, 3, 32, 32), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def decode_image(encoded: str) -> NDArray[np.uint8]:
    """A captured image (base64 of 3 x 32 x 32 bytes) back to its array."""
    raw = base64.b64decode(encoded)
    if len(raw) != 3 * 32 * 32:
        raise MltrailError(f"a captured image has {len(raw)} bytes, expected 3,072")
    return np.frombuffer(raw, dtype=np.uint8).reshape(3, 32, 32)


def in_eval(prediction_id: str, fraction: float) -> bool:
    """Deterministic split by id: the same prediction always lands on the same side."""
    digest = hashlib.sha256(prediction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


@dataclass(frozen=True)
class Batch:
    train: Path
    eval: Path
    rows: dict[str, int]


def write_batch(
    folder: Path,
    task: str,
    stamp: str,
    ids: Sequence[str],
    inputs: Sequence[str],
    labels: Sequence[int],
    eval_fraction: float,
    recent: Sequence[bool] | None = None,
) -> Batch:
    """Split labelled inputs into ``train-<stamp>`` and ``eval-<stamp>``, each written
    atomically. Either part may be empty (then it still exists, with no rows)."""
    if not ids:
        raise MltrailError("no labelled production data to add")
    folder.mkdir(parents=True, exist_ok=True)
    held = np.array([in_eval(i, eval_fraction) for i in ids], dtype=bool)
    layout = task_spec(task).prepared
    paths = {part: folder / f"{part}-{stamp}{layout.suffix}" for part in ("train", "eval")}
    y = np.asarray(labels, dtype=np.int64)
    now = np.ones(len(ids), dtype=bool) if recent is None else np.asarray(recent, dtype=bool)
    for part, mask in (("train", ~held), ("eval", held)):
        with atomic_file(paths[part]) as tmp:
            if layout.format == "parquet":
                texts = np.asarray(inputs, dtype=object)[mask]
                frame = pd.DataFrame({"text": texts, "label": y[mask], "recent": now[mask]})
                frame.to_parquet(tmp, index=False)
                continue
            chosen = [decode_image(s) for s, m in zip(inputs, mask, strict=True) if m]
            x = np.stack(chosen) if chosen else np.zeros((0, 3, 32, 32), np.uint8)
            with tmp.open("wb") as f:
                np.savez_compressed(f, x=x, y=y[mask], recent=now[mask])
    rows = {
        "train": int((~held).sum()),
        "eval": int(held.sum()),
        "eval_recent": int((held & now).sum()),
    }
    return Batch(paths["train"], paths["eval"], rows)
