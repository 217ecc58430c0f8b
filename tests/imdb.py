"""Real IMDB reviews (the shared datasets) with a group column added, for the fairness tests.

The real data has no group: one is assigned here, seeded, either at random (no real gap
between groups: any measured gap is noise) or by the test's own design. What the tests can
show on it is that the machinery measures and flags a gap that was put there, not that IMDB
holds one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from mltrail.data.text import read_text_csv
from tests.conftest import shared_datasets


@cache
def _imdb() -> pd.DataFrame:
    return read_text_csv(shared_datasets() / "imdb_reviews.csv.gz", "text", "label", "replace")


def imdb_rows(n: int, seed: int, offset: int = 0) -> pd.DataFrame:
    """``n`` IMDB reviews (columns text, label: "0"/"1"), a seeded sample of the rows after the
    first ``offset`` of a seeded shuffle (so two calls with disjoint ranges share no review),
    with a random ``grp`` column of ``a`` and ``b``."""
    frame = _imdb()
    order = np.random.default_rng(12345).permutation(len(frame))[offset : offset + n]
    rows = frame.iloc[order].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    return rows.assign(grp=rng.choice(["a", "b"], size=len(rows)))


def write_grouped_csv(path: Path, rows: pd.DataFrame) -> Path:
    rows.to_csv(path, index=False)
    return path
