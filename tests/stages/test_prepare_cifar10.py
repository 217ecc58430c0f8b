from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import mltrail.stages.prepare_cifar10 as prepare_cifar10
from mltrail.config import Params
from mltrail.data.cifar10 import read_cifar10_archive
from mltrail.errors import DataError
from tests.builders import CIFAR_CLASSES, write_cifar_archive

Make = Callable[..., Params]


def test_subset_is_stratified_seeded_and_scaled(tmp_path: Path, make_params: Make) -> None:
    path = write_cifar_archive(tmp_path / "c.tar.gz", per_class_per_batch=4, test_per_class=5)
    arrays = read_cifar10_archive(path)
    params = make_params("cifar10.train_size=50", "cifar10.test_size=20")
    a = prepare_cifar10.prepare_cifar10(arrays, params.cifar10_section())
    b = prepare_cifar10.prepare_cifar10(arrays, params.cifar10_section())
    assert a.x_train.shape == (50, 3, 32, 32) and a.x_train.dtype == np.float32
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    assert np.bincount(a.y_train).tolist() == [5] * 10
    assert np.bincount(a.y_test).tolist() == [2] * 10
    assert a.profile["content_sha256"] == b.profile["content_sha256"]
    other = prepare_cifar10.prepare_cifar10(
        arrays, make_params("cifar10.train_size=50", "cifar10.seed=1").cifar10_section()
    )
    assert other.profile["content_sha256"] != a.profile["content_sha256"]


def test_profile_channel_statistics_match_the_arrays(tmp_path: Path, make_params: Make) -> None:
    arrays = read_cifar10_archive(write_cifar_archive(tmp_path / "c.tar.gz"))
    prepared = prepare_cifar10.prepare_cifar10(arrays, make_params().cifar10_section())
    means = prepared.x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    assert prepared.profile["train"]["channel_mean"] == pytest.approx(means.tolist(), rel=1e-5)
    assert prepared.profile["train"]["class_counts"] == dict.fromkeys(CIFAR_CLASSES, 10)
    assert prepared.profile["rows"] == {"train": 100, "test": 30, "feedback": 0}


def test_subset_larger_than_data(tmp_path: Path, make_params: Make) -> None:
    arrays = read_cifar10_archive(write_cifar_archive(tmp_path / "c.tar.gz"))
    with pytest.raises(DataError, match=r"cifar10\.train_size=1000 is larger than the 100 rows"):
        prepare_cifar10.prepare_cifar10(
            arrays, make_params("cifar10.train_size=1000").cifar10_section()
        )


def test_run_from_a_mirror_with_its_checksum(
    tmp_path: Path, make_params: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = write_cifar_archive(mirror / "cifar-10-python.tar.gz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = tmp_path / "out"
    params = make_params(
        f"data.mirror={mirror}",
        f"cifar10.source.mirror=[{{file: cifar-10-python.tar.gz, sha256: {digest}}}]",
    )
    prepare_cifar10.run(params, out, tmp_path / "dl", progress=False)
    with np.load(out / "train.npz") as train:
        assert train["x"].shape == (100, 3, 32, 32) and train["y"].shape == (100,)
    profile = json.loads((out / "profile.json").read_text())
    assert profile["source"] == {
        "file": "cifar-10-python.tar.gz",
        "sha256": digest,
        "verified": True,
    }
    assert json.loads((out / "labels.json").read_text())["classes"] == CIFAR_CLASSES


def test_checksum_mismatch_writes_nothing(tmp_path: Path, make_params: Make) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_cifar_archive(mirror / "cifar-10-python.tar.gz")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="checksum mismatch"):  # the repo's checksums only
        prepare_cifar10.run(make_params(f"data.mirror={mirror}"), out, tmp_path, progress=False)
    assert not out.exists()
