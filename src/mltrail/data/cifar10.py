"""CIFAR-10 "python version" archive reader: pickled batches, read straight from the tar.

The batches are pickles. Unpickling runs code named in the file, so the reader allows only the
few numpy constructors that the official files use and refuses anything else: a tampered
archive gets an error, not code execution.
"""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mltrail.data.archive import read_member, reading_archive
from mltrail.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32
_MEMBER = re.compile(r"(?:^|/)(data_batch_[1-5]|test_batch|batches\.meta)$")

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; avoid the deprecation shim
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def safe_unpickle(data: bytes, what: str) -> dict[bytes, Any]:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{what} is not a CIFAR-10 batch pickle ({type(exc).__name__}: {exc})",
            hint="the archive is corrupt or not the CIFAR-10 python version",
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{what} holds a {type(obj).__name__}, not a CIFAR-10 batch dict")
    return obj


@dataclass(frozen=True)
class Cifar10Arrays:
    """Raw CIFAR-10 as in the archive: uint8 images N x 3 x 32 x 32, int64 labels."""

    x_train: NDArray[np.uint8]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.uint8]
    y_test: NDArray[np.int64]
    classes: list[str]


def _batch_arrays(
    batch: dict[bytes, Any], what: str
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except KeyError as exc:
        raise DataError(f"{what} has no {exc.args[0]!r} entry") from None
    data = np.asarray(data)
    y = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(f"{what}: data is {data.dtype} {data.shape}, expected uint8 N x {_PIXELS}")
    if len(y) != len(data):
        raise DataError(f"{what}: {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{what}: labels outside 0..9 (min {y.min()}, max {y.max()})")
    return data.reshape(-1, *IMAGE_SHAPE), y


def read_cifar10_archive(path: Path) -> Cifar10Arrays:
    """Read every batch of ``cifar-10-python.tar.gz`` in memory, without extracting it."""
    batches: dict[str, dict[bytes, Any]] = {}
    with reading_archive(path) as tar:
        for member in tar:
            match = _MEMBER.search(member.name)
            if match and member.isfile():
                name = match.group(1)
                batches[name] = safe_unpickle(read_member(tar, member), f"{path}:{member.name}")
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH, META) if n not in batches]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}",
            hint="expected the CIFAR-10 python version (cifar-10-batches-py/...)",
        )
    train = [_batch_arrays(batches[n], n) for n in TRAIN_BATCHES]
    x_test, y_test = _batch_arrays(batches[TEST_BATCH], TEST_BATCH)
    names = batches[META].get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{META} has no list of 10 label_names")
    return Cifar10Arrays(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        classes=[n.decode() if isinstance(n, bytes) else str(n) for n in names],
    )


def to_unit_float(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Scale uint8 pixels to float32 in [0, 1], as the paper's preprocessing does."""
    return images.astype(np.float32) / np.float32(255.0)
