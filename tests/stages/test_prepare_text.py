from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import mltrail.stages.prepare_text as prepare_text
from mltrail.cli import main
from mltrail.config import Params
from mltrail.data.text import read_labelled_text
from mltrail.errors import DataError, ParamsError
from tests.builders import text_rows, write_aclimdb_archive, write_csv
from tests.conftest import PARAMS

Make = Callable[..., Params]


def _prepare(csv: Path, make_params: Make, *overrides: str) -> prepare_text.PreparedText:
    params = make_params(f"text.source.path={csv}", *overrides)
    raw = read_labelled_text(csv, "text", "label", "replace")
    return prepare_text.prepare_text(raw, params.text)


def test_stratified_split_keeps_class_balance(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(60, classes=(0, 1)) + text_rows(40, classes=(2,)))
    prepared = _prepare(csv, make_params, "text.class_names=null")
    assert len(prepared.train) == 128 and len(prepared.test) == 32
    assert prepared.test["label"].value_counts().sort_index().tolist() == [12, 12, 8]
    assert prepared.classes == ["0", "1", "2"]
    assert not set(prepared.train["text"]) & set(prepared.test["text"])


def test_sample_is_seeded_and_stratified(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(100))
    a = _prepare(csv, make_params, "text.sample_rows=50")
    b = _prepare(csv, make_params, "text.sample_rows=50")
    c = _prepare(csv, make_params, "text.sample_rows=50", "text.seed=7")
    assert a.profile["rows"] == {"train": 40, "test": 10, "feedback": 0}
    assert a.profile["train"]["class_counts"] == {"neg": 20, "pos": 20}  # params.yaml names 0/1
    assert a.profile["content_sha256"] == b.profile["content_sha256"]
    assert a.profile["content_sha256"] != c.profile["content_sha256"]


def test_string_labels_work_unchanged(tmp_path: Path, make_params: Make) -> None:
    groups = ["rec.autos", "sci.space", "alt.atheism"]
    csv = write_csv(tmp_path / "news.csv", text_rows(10, classes=groups))
    prepared = _prepare(csv, make_params, "text.class_names=null")
    assert prepared.classes == sorted(groups)
    assert prepared.profile["train"]["class_counts"] == dict.fromkeys(sorted(groups), 8)


def test_sample_larger_than_data_is_an_error(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(10))
    with pytest.raises(DataError, match=r"text.sample_rows=500 is larger than the 20 rows"):
        _prepare(csv, make_params, "text.sample_rows=500")


def test_single_class_is_an_error(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(10, classes=("pos",)))
    with pytest.raises(DataError, match=r"single class \(pos\)"):
        _prepare(csv, make_params, "text.class_names=null")


def test_class_with_one_row_is_named(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", [*text_rows(10), ("lonely text", "rare")])
    with pytest.raises(DataError, match=r"'rare' \(1 row\)"):
        _prepare(csv, make_params, "text.class_names=null")


def test_profile_describes_lengths_and_cleaning(tmp_path: Path, make_params: Make) -> None:
    rows = [*text_rows(20), ("dup", 1), ("dup", 1)]
    prepared = _prepare(write_csv(tmp_path / "d.csv", rows), make_params)
    profile = prepared.profile
    assert profile["cleaning"]["duplicates"] == 1
    assert profile["cleaning"]["rows_kept"] == 41
    words = profile["train"]["words"]
    assert words["min"] <= words["p50"] <= words["max"]
    assert "<br" not in "".join(prepared.train["text"])


def test_run_writes_every_output(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(25))
    out = tmp_path / "prepared"
    prepare_text.run(make_params(f"text.source.path={csv}"), out, tmp_path / "dl", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.json", "profile.json", "test.parquet", "train.parquet",
    ]  # fmt: skip
    train = pd.read_parquet(out / "train.parquet")
    assert list(train.columns) == ["text", "label"] and len(train) == 40
    assert json.loads((out / "labels.json").read_text()) == {"classes": ["neg", "pos"]}
    profile = json.loads((out / "profile.json").read_text())
    assert profile["source"]["file"] == "d.csv" and profile["source"]["verified"] is False
    # Where the file lies is no part of what the data is (equal bytes in every clone).
    assert "path" not in profile["params"]["source"] and str(tmp_path) not in str(profile)


def test_failure_keeps_the_previous_outputs_and_leaves_no_debris(
    tmp_path: Path, make_params: Make
) -> None:
    out = tmp_path / "prepared"
    good = write_csv(tmp_path / "good.csv", text_rows(25))
    prepare_text.run(make_params(f"text.source.path={good}"), out, tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write_csv(tmp_path / "bad.csv", text_rows(25, classes=(0,)))
    with pytest.raises(DataError):
        prepare_text.run(make_params(f"text.source.path={bad}"), out, tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_is_byte_identical_when_prepared_twice(tmp_path: Path, make_params: Make) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(25))
    params = make_params(f"text.source.path={csv}")
    prepare_text.run(params, tmp_path / "a", tmp_path, progress=False)
    prepare_text.run(params, tmp_path / "b", tmp_path, progress=False)
    for name in ("train.parquet", "test.parquet", "profile.json", "labels.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_aclimdb_archive_through_the_cli(
    tmp_path: Path, no_mirror: None, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = write_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz", per_folder=10)
    out = tmp_path / "out"
    code = main([
        "prepare", "text", "--params", str(PARAMS), "--out", str(out), "--no-progress",
        "--set", f"text.source.path={archive}",
    ])  # fmt: skip
    assert code == 0
    profile = json.loads((out / "profile.json").read_text())
    assert profile["rows"] == {"train": 32, "test": 8, "feedback": 0}
    assert profile["train"]["class_counts"] == {"neg": 16, "pos": 16}  # the folders' names


def test_cli_reports_bad_input_without_traceback(
    tmp_path: Path, no_mirror: None, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "d.csv", [("a", 1)], columns=("body", "label"))
    out = tmp_path / "out"
    code = main([
        "prepare", "text", "--params", str(PARAMS), "--out", str(out),
        "--set", f"text.source.path={csv}",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mltrail: error:") and "no column 'text'" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_rejects_an_unknown_param(
    tmp_path: Path, no_mirror: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([
        "prepare", "text", "--params", str(PARAMS), "--out", str(tmp_path / "o"),
        "--set", "text.colour=blue",
    ])  # fmt: skip
    assert code == 1
    assert "text.colour: unknown key" in capsys.readouterr().err


def test_numeric_labels_take_their_names_from_class_names(
    tmp_path: Path, make_params: Make
) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(20))  # labels 0 and 1, as IMDB's
    named = _prepare(csv, make_params)  # params.yaml: {"0": neg, "1": pos}
    plain = _prepare(csv, make_params, "text.class_names=null")
    assert named.classes == ["neg", "pos"] and plain.classes == ["0", "1"]
    assert named.train.equals(plain.train) and named.test.equals(plain.test)  # same indices
    assert named.profile["train"]["class_counts"] == {"neg": 16, "pos": 16}


def test_class_indices_follow_the_values_not_the_names(tmp_path: Path, make_params: Make) -> None:
    """The values' order (numeric for integers: 2 before 10) numbers the classes, so a name
    never renumbers one, and the order is the same on every run."""
    csv = write_csv(tmp_path / "d.csv", text_rows(10, classes=(10, 2)))
    prepared = _prepare(csv, make_params, "text.class_names={10: alpha, 2: zulu}")
    assert prepared.classes == ["zulu", "alpha"]
    first = prepared.train["text"].str.contains("class 2:")
    assert set(prepared.train["label"][first]) == {0}


def test_a_value_without_a_name_is_an_error_that_names_it(
    tmp_path: Path, make_params: Make
) -> None:
    csv = write_csv(tmp_path / "d.csv", text_rows(10, classes=(0, 1, 2)))
    with pytest.raises(DataError, match=r"label value '2' is in the data but not in text.class_"):
        _prepare(csv, make_params)
    csv = write_csv(tmp_path / "s.csv", text_rows(10, classes=("bad", "good")))
    with pytest.raises(DataError, match=r"values 'bad', 'good' are in the data .* names '0', '1'"):
        _prepare(csv, make_params)
    groups = [f"group.{i:02d}" for i in range(12)]  # labels that are names already
    csv = write_csv(tmp_path / "g.csv", text_rows(5, classes=groups))
    with pytest.raises(DataError, match=r"'group.09' \(and 2 more\).*\n.*class_names=null"):
        _prepare(csv, make_params)


def test_two_values_cannot_share_a_name(make_params: Make) -> None:
    with pytest.raises(ParamsError, match=r"cannot share a class name .*'0', '1' -> 'same'"):
        make_params("text.class_names={0: same, 1: same}")
    assert make_params("text.class_names={0: a, 1: b}").text.class_names == {"0": "a", "1": "b"}
