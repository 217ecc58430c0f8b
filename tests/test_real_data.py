"""Fast checks of the real datasets (../shared/datasets or $MLTRAIL_DATA_MIRROR)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mltrail.config import Params
from mltrail.data.cifar10 import read_cifar10_archive
from mltrail.data.sources import fetch
from mltrail.data.text import read_labelled_text
from mltrail.stages import prepare_cifar10, prepare_text
from tests.conftest import shared_datasets

pytestmark = pytest.mark.shared_data
Make = Callable[..., Params]

# shared/datasets/README.md: per-batch class counts of data_batch_1, training channel means.
BATCH_1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
TRAIN_CHANNEL_MEANS = [0.4913, 0.4821, 0.4465]


def test_imdb_through_the_mirror(
    make_params: Make, tmp_path_factory: pytest.TempPathFactory
) -> None:
    params = make_params(f"data.mirror={shared_datasets()}", "text.sample_rows=5000")
    source = fetch(
        params.text.source, tmp_path_factory.mktemp("dl"), params.data.mirror_dir(), progress=False
    )
    assert source.origin == "mirror" and source.verified
    raw = read_labelled_text(source.path, "text", "label", "replace")
    assert len(raw) == 50_000
    assert raw["label"].value_counts().to_dict() == {"0": 25_000, "1": 25_000}
    prepared = prepare_text.prepare_text(raw, params.text)
    assert prepared.profile["rows"] == {"train": 4000, "test": 1000, "feedback": 0}
    # stratified: the sample keeps the cleaned data's class ratio (dedup made it 24,8xx / 24,7xx)
    counts = prepared.profile["train"]["class_counts"]
    assert sum(counts.values()) == 4000 and abs(counts["neg"] - counts["pos"]) <= 20
    assert prepared.classes == ["neg", "pos"]  # 0/1 named by params.yaml's text.class_names
    assert prepared.profile["cleaning"]["duplicates"] >= 418  # the README's duplicate texts
    assert 100 < prepared.profile["train"]["words"]["p50"] < 400


def test_20newsgroups_with_the_same_code(
    make_params: Make, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = shared_datasets() / "20newsgroups_bydate.csv.gz"
    params = make_params(f"text.source.path={path}", "text.class_names=null")  # named labels
    out = tmp_path_factory.mktemp("news")
    prepared = prepare_text.run(params, out, out, progress=False)
    assert len(prepared.classes) == 20
    assert prepared.classes[0] == "alt.atheism" and "rec.sport.hockey" in prepared.classes
    total = sum(prepared.profile["rows"].values())
    assert 18_000 < total <= 18_846
    assert prepared.profile["test"]["rows"] == pytest.approx(0.2 * total, abs=20)
    counts = prepared.profile["train"]["class_counts"]
    assert min(counts.values()) > 400 and max(counts.values()) < 800


def test_cifar10_shapes_counts_and_ranges(
    make_params: Make, tmp_path_factory: pytest.TempPathFactory
) -> None:
    params = make_params(
        f"data.mirror={shared_datasets()}", "cifar10.train_size=5000", "cifar10.test_size=1000"
    )
    source = fetch(
        params.cifar10_section().source,
        tmp_path_factory.mktemp("dl"),
        params.data.mirror_dir(),
        progress=False,
    )
    assert source.verified
    arrays = read_cifar10_archive(source.path)
    assert arrays.x_train.shape == (50_000, 3, 32, 32) and arrays.x_test.shape == (
        10_000,
        3,
        32,
        32,
    )
    assert np.bincount(arrays.y_train[:10_000]).tolist() == BATCH_1_COUNTS
    assert np.bincount(arrays.y_test).tolist() == [1000] * 10
    means = arrays.x_train.mean(axis=(0, 2, 3)) / 255
    assert means.tolist() == pytest.approx(TRAIN_CHANNEL_MEANS, abs=2e-4)
    prepared = prepare_cifar10.prepare_cifar10(arrays, params.cifar10_section())
    assert prepared.x_train.shape == (5000, 3, 32, 32)
    assert prepared.x_train.min() >= 0.0 and prepared.x_train.max() <= 1.0
    assert np.bincount(prepared.y_test).tolist() == [100] * 10
