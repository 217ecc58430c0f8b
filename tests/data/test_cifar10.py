from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mltrail.data.cifar10 import read_cifar10_archive, safe_unpickle, to_unit_float
from mltrail.errors import DataError
from tests.builders import CIFAR_CLASSES, cifar_batch, truncate, write_cifar_archive


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned > /tmp/mltrail-pwned",))


def test_reads_every_batch_in_order(tmp_path: Path) -> None:
    path = write_cifar_archive(tmp_path / "c.tar.gz", per_class_per_batch=2, test_per_class=3)
    arrays = read_cifar10_archive(path)
    assert arrays.x_train.shape == (100, 3, 32, 32) and arrays.x_train.dtype == np.uint8
    assert arrays.x_test.shape == (30, 3, 32, 32)
    assert arrays.classes == CIFAR_CLASSES
    assert np.bincount(arrays.y_train).tolist() == [10] * 10
    # row layout: 1024 red values, then green, then blue, each plane row-major
    first = cifar_batch([c for c in range(10) for _ in range(2)], seed=1, batch_label=b"")
    raw = first[b"data"][0]  # type: ignore[index]
    assert np.array_equal(arrays.x_train[0, 0].ravel(), raw[:1024])
    assert np.array_equal(arrays.x_train[0, 2, 31], raw[2048 + 31 * 32 : 3072])


def test_scaling_to_unit_range() -> None:
    pixels = np.array([0, 51, 255], dtype=np.uint8)
    scaled = to_unit_float(pixels)
    assert scaled.dtype == np.float32
    assert scaled.tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_truncated_archive(tmp_path: Path) -> None:
    path = truncate(write_cifar_archive(tmp_path / "c.tar.gz", per_class_per_batch=20))
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_cifar10_archive(path)


def test_not_a_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "c.tar.gz"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_cifar10_archive(path)


def test_missing_batches_are_listed(tmp_path: Path) -> None:
    path = write_cifar_archive(tmp_path / "c.tar.gz", skip=["data_batch_3", "batches.meta"])
    with pytest.raises(DataError, match=r"lacks data_batch_3, batches\.meta"):
        read_cifar10_archive(path)


def test_malicious_pickle_is_refused_not_run(tmp_path: Path) -> None:
    marker = Path("/tmp/mltrail-pwned")
    marker.unlink(missing_ok=True)
    evil = pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2)
    path = write_cifar_archive(tmp_path / "c.tar.gz", override={"data_batch_2": evil})
    with pytest.raises(DataError, match=r"refusing to load (posix|os)\.system"):
        read_cifar10_archive(path)
    assert not marker.exists()


def test_wrong_shapes_and_labels_are_explained(tmp_path: Path) -> None:
    bad = {b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    path = write_cifar_archive(tmp_path / "a.tar.gz", override={"test_batch": pickle.dumps(bad, 2)})
    with pytest.raises(DataError, match=r"test_batch: data is uint8 \(4, 100\)"):
        read_cifar10_archive(path)
    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 12]}
    path = write_cifar_archive(tmp_path / "b.tar.gz", override={"test_batch": pickle.dumps(bad, 2)})
    with pytest.raises(DataError, match=r"labels outside 0\.\.9"):
        read_cifar10_archive(path)


def test_safe_unpickle_rejects_non_dicts_and_garbage() -> None:
    with pytest.raises(DataError, match="holds a list"):
        safe_unpickle(pickle.dumps([1, 2], protocol=2), "x")
    with pytest.raises(DataError, match="not a CIFAR-10 batch pickle"):
        safe_unpickle(b"garbage", "x")
