"""Stage ``prepare_cifar10``: the CIFAR-10 python archive -> NPZ arrays in [0, 1].

Outputs (one folder, written atomically): ``train.npz`` and ``test.npz`` (``x``: float32
N x 3 x 32 x 32 in [0, 1], channels first as PyTorch wants them; ``y``: int64 class index),
``labels.json`` and ``profile.json`` (per-channel mean/std, brightness, contrast, class
counts, content hash).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mltrail.config import Cifar10Params, Params
from mltrail.contracts.tasks import task_spec
from mltrail.data import feedback
from mltrail.data.cifar10 import Cifar10Arrays, read_cifar10_archive, to_unit_float
from mltrail.data.profile import array_content_hash, image_profile
from mltrail.data.sources import FetchedFile
from mltrail.data.split import stratified_subset
from mltrail.fsio import atomic_dir, write_json
from mltrail.stages.common import fetch_source, provenance

log = logging.getLogger(__name__)
TASK = task_spec("cifar10")


@dataclass(frozen=True)
class PreparedCifar10:
    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]
    classes: list[str]
    profile: dict[str, Any]


def prepare_cifar10(
    arrays: Cifar10Arrays,
    params: Cifar10Params,
    feedback: tuple[NDArray[np.float32], NDArray[np.int64]] | None = None,
) -> PreparedCifar10:
    """Subset (seeded, stratified), scale to [0, 1], and add ``feedback`` (labelled production
    images in [0, 1]) to the training split; no file access."""
    names = arrays.classes
    train = stratified_subset(
        arrays.y_train, params.train_size, params.seed, "cifar10.train_size", names
    )
    test = stratified_subset(
        arrays.y_test, params.test_size, params.seed, "cifar10.test_size", names
    )
    x_train, y_train = to_unit_float(arrays.x_train[train]), arrays.y_train[train]
    x_test, y_test = to_unit_float(arrays.x_test[test]), arrays.y_test[test]
    added = 0
    if feedback is not None and len(feedback[1]):
        repeat = params.feedback_repeat
        x_train = np.concatenate([x_train, *[feedback[0]] * repeat])
        y_train = np.concatenate([y_train, *[feedback[1]] * repeat])
        added = len(feedback[1])
    profile = {
        "task": "cifar10",
        "classes": names,
        "rows": {"train": len(y_train), "test": len(y_test), "feedback": added},
        "train": image_profile(x_train, y_train, names),
        "test": image_profile(x_test, y_test, names),
        "content_sha256": array_content_hash(x_train, y_train, x_test, y_test),
    }
    return PreparedCifar10(x_train, y_train, x_test, y_test, names, profile)


def write_prepared_cifar10(
    prepared: PreparedCifar10,
    out_dir: Path,
    source: FetchedFile,
    params: Cifar10Params,
    reference: tuple[NDArray[np.float32], NDArray[np.int64]] | None = None,
) -> None:
    """``reference``: held-out feedback images the trained models are monitored against
    (``reference.npz``; without it, the test split is their reference)."""
    layout = TASK.prepared
    with atomic_dir(out_dir) as tmp:
        np.savez(tmp / layout.train, x=prepared.x_train, y=prepared.y_train)
        np.savez(tmp / layout.test, x=prepared.x_test, y=prepared.y_test)
        if reference is not None:
            np.savez(tmp / layout.reference, x=reference[0], y=reference[1])
        layout.write_classes(tmp, prepared.classes)
        write_json(tmp / layout.profile, prepared.profile | provenance(source, params))


def run(
    params: Params, out_dir: Path, download_dir: Path, progress: bool = True
) -> PreparedCifar10:
    cifar = params.cifar10_section()
    source = fetch_source(params, cifar.source, download_dir, progress)
    folder = Path(cifar.feedback_dir) if cifar.feedback_dir else None
    batches = feedback.batch_files(folder, TASK.task)
    prepared = prepare_cifar10(
        read_cifar10_archive(source.path), cifar, feedback.read_image_batches(batches)
    )
    prepared.profile["feedback"] = feedback.provenance(batches)
    newest = feedback.batch_files(folder, TASK.task, "eval")[-1:]
    recent = feedback.read_image_batches(newest, recent_only=True)
    use = newest and len(recent[1]) >= max(cifar.reference_min_feedback, 1)
    prepared.profile["reference"] = (
        {"source": "feedback", "batch": newest[0].name, "rows": len(recent[1])}
        if use
        else {"source": "test"}
    )
    write_prepared_cifar10(prepared, out_dir, source, cifar, recent if use else None)
    log.info(
        "wrote %s: %d train, %d test images", out_dir, len(prepared.y_train), len(prepared.y_test)
    )
    return prepared
