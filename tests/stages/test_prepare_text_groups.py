"""prepare_data_text with ``text.group_column``: real IMDB reviews with a group column added."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import mltrail.stages.prepare_text as prepare_text
from mltrail.config import Params
from mltrail.data.text import clean_text
from mltrail.errors import DataError
from tests.builders import write_aclimdb_archive
from tests.imdb import imdb_rows, write_grouped_csv

pytestmark = pytest.mark.shared_data
Make = Callable[..., Params]


def test_the_group_column_is_carried_into_the_split_and_counted(
    tmp_path: Path, make_params: Make
) -> None:
    rows = imdb_rows(600, seed=1)
    csv = write_grouped_csv(tmp_path / "g.csv", rows)
    params = make_params(f"text.source.path={csv}", "text.group_column=grp")
    out = tmp_path / "prepared"
    prepare_text.run(params, out, tmp_path, progress=False)
    train, test = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")
    assert list(test.columns) == ["text", "label", "group"]
    # Each row keeps its own group: looked up by its (cleaned) text in the source.
    source = {clean_text(t, True): g for t, g in zip(rows["text"], rows["grp"], strict=True)}
    both = pd.concat([train, test])
    assert [source[t] for t in both["text"]] == both["group"].tolist()
    profile = json.loads((out / "profile.json").read_text())
    groups = profile["groups"]
    assert groups["column"] == "grp" and groups["train_without_group"] == 0
    assert groups["train"] == train["group"].value_counts().to_dict()
    assert groups["test"] == test["group"].value_counts().to_dict()
    assert sum(groups["train"].values()) + sum(groups["test"].values()) == len(both)


def test_without_a_group_column_param_the_split_is_as_before(
    tmp_path: Path, make_params: Make
) -> None:
    csv = write_grouped_csv(tmp_path / "g.csv", imdb_rows(300, seed=1))
    out = tmp_path / "prepared"
    prepare_text.run(make_params(f"text.source.path={csv}"), out, tmp_path, progress=False)
    assert list(pd.read_parquet(out / "test.parquet").columns) == ["text", "label"]
    profile = json.loads((out / "profile.json").read_text())
    assert "groups" not in profile and profile["params"]["group_column"] is None


def test_a_missing_group_column_is_an_error_naming_it_and_the_columns(
    tmp_path: Path, make_params: Make
) -> None:
    csv = write_grouped_csv(tmp_path / "g.csv", imdb_rows(50, seed=1))
    params = make_params(f"text.source.path={csv}", "text.group_column=region")
    with pytest.raises(DataError) as info:
        prepare_text.run(params, tmp_path / "out", tmp_path, progress=False)
    assert "no column 'region'" in str(info.value)
    assert "['text', 'label', 'grp']" in str(info.value)
    assert "text.group_column" in str(info.value.hint)
    assert not (tmp_path / "out").exists()


def test_rows_without_a_group_are_an_error_with_their_lines(
    tmp_path: Path, make_params: Make
) -> None:
    rows = imdb_rows(50, seed=1)
    rows.loc[[3, 7], "grp"] = ""
    csv = write_grouped_csv(tmp_path / "g.csv", rows)
    params = make_params(f"text.source.path={csv}", "text.group_column=grp")
    with pytest.raises(DataError, match=r"2 of 50 rows have no value in the group column") as info:
        prepare_text.run(params, tmp_path / "out", tmp_path, progress=False)
    assert "CSV lines [5, 9]" in str(info.value)


def test_the_aclimdb_archive_has_no_group_column(tmp_path: Path, make_params: Make) -> None:
    archive = write_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz")
    params = make_params(f"text.source.path={archive}", "text.group_column=grp")
    with pytest.raises(DataError, match="aclImdb archive, which has no group column"):
        prepare_text.run(params, tmp_path / "out", tmp_path, progress=False)
