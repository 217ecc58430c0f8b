from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mltrail.config import MIRROR_ENV, Params, load_params

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


def shared_datasets() -> Path:
    """The real datasets: $MLTRAIL_DATA_MIRROR, else ../shared/datasets beside the repo."""
    folder = Path(os.environ.get(MIRROR_ENV) or REPO.parent / "shared" / "datasets")
    if not (folder / "imdb_reviews.csv.gz").is_file():
        raise RuntimeError(
            f"the real datasets are not in {folder}: set {MIRROR_ENV} to the folder holding "
            "imdb_reviews.csv.gz, 20newsgroups_bydate.csv.gz and cifar-10-python.tar.gz"
        )
    return folder


@pytest.fixture
def no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of source resolution must not see the developer's mirror variable."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture
def make_params(no_mirror: None) -> Callable[..., Params]:
    """The repository's params.yaml with ``--set``-style overrides."""

    def make(*overrides: str) -> Params:
        return load_params(PARAMS, overrides)

    return make
