from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mltrail.data.text import (
    clean_frame,
    clean_text,
    encode_labels,
    label_classes,
    read_labelled_text,
)
from mltrail.errors import DataError
from tests.builders import gzip_bytes, truncate, write_aclimdb_archive, write_csv


def _clean(frame: pd.DataFrame, **kw: object) -> tuple[pd.DataFrame, object]:
    options = {
        "strip_html": True,
        "min_chars": 1,
        "drop_duplicates": True,
        "missing_labels": "error",
    }
    return clean_frame(frame, **(options | kw))  # type: ignore[arg-type]


def test_csv_with_other_column_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "y")], columns=("body", "topic"))
    frame = read_labelled_text(path, "body", "topic", "replace")
    assert list(frame.columns) == ["text", "label"]
    assert frame.to_dict("list") == {"text": ["a", "b"], "label": ["x", "y"]}


def test_gzip_csv_keeps_na_like_words_as_text(tmp_path: Path) -> None:
    path = gzip_bytes(tmp_path / "d.csv.gz", b"text,label\nNA,0\nnull,1\n")
    frame = read_labelled_text(path, "text", "label", "replace")
    assert frame["text"].tolist() == ["NA", "null"]


def test_missing_column_lists_the_columns_there(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("a", 1)], columns=("review", "label"))
    with pytest.raises(DataError) as info:
        read_labelled_text(path, "text", "label", "replace")
    assert "no column 'text'" in str(info.value)
    assert "['review', 'label']" in str(info.value)
    assert "text.text_column" in str(info.value)


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_labelled_text(empty, "text", "label", "replace")
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    frame = read_labelled_text(header, "text", "label", "replace")
    with pytest.raises(DataError, match="no rows"):
        _clean(frame)


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\ncaf\xe9 au lait,1\nplain,0\n")
    frame = read_labelled_text(path, "text", "label", "replace")
    assert frame["text"][0] == "caf\ufffd au lait"
    _, report = _clean(frame)
    assert report.decode_replacements == 1  # type: ignore[attr-defined]


def test_non_utf8_bytes_under_strict_policy_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\ncaf\xe9,1\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_labelled_text(path, "text", "label", "strict")


def test_corrupt_gzip_csv(tmp_path: Path) -> None:
    path = truncate(gzip_bytes(tmp_path / "d.csv.gz", b"text,label\n" + b"abc,1\n" * 5000), 0.3)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_labelled_text(path, "text", "label", "replace")


def test_aclimdb_archive_in_official_order(tmp_path: Path) -> None:
    path = write_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz", per_folder=2)
    frame = read_labelled_text(path, "ignored", "ignored", "replace")
    assert frame["label"].tolist() == ["0", "0", "1", "1"] * 2
    assert frame["text"][0].startswith("train neg review 0")
    assert frame["text"][5].startswith("test neg review 1")
    assert not frame["text"].str.contains("unlabelled").any()


def test_truncated_archive_is_a_clear_error(tmp_path: Path) -> None:
    path = truncate(write_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz", per_folder=50))
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_labelled_text(path, "text", "label", "replace")


def test_archive_without_reviews(tmp_path: Path) -> None:
    import tarfile

    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    with pytest.raises(DataError, match="no aclImdb"):
        read_labelled_text(path, "text", "label", "replace")


def test_cleaning_strips_html_and_whitespace_but_not_email_brackets() -> None:
    assert clean_text("Great<br /><br />film,\n\t <i>really</i>", True) == "Great film, really"
    assert clean_text("From: <bob@example.com>", True) == "From: <bob@example.com>"
    assert clean_text("a<br />b", False) == "a<br />b"


def test_cleaning_drops_empty_and_duplicate_texts() -> None:
    frame = pd.DataFrame({"text": ["a", " a ", "<br />", "b"], "label": ["1", "1", "0", "0"]})
    cleaned, report = _clean(frame)
    assert cleaned["text"].tolist() == ["a", "b"]
    assert (report.duplicates, report.empty_texts, report.rows_kept) == (1, 1, 2)  # type: ignore[attr-defined]


def test_missing_labels_are_an_error_or_dropped() -> None:
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": ["1", "", "0"]})
    with pytest.raises(DataError, match=r"1 of 3 rows have no label \(first at CSV lines \[3\]\)"):
        _clean(frame)
    cleaned, report = _clean(frame, missing_labels="drop")
    assert cleaned["text"].tolist() == ["a", "c"] and report.missing_labels == 1  # type: ignore[attr-defined]


def test_label_classes_sort_integers_numerically() -> None:
    assert label_classes(pd.Series(["10", "2", "1"])) == ["1", "2", "10"]
    assert label_classes(pd.Series(["sci.space", "alt.atheism"])) == ["alt.atheism", "sci.space"]
    assert encode_labels(pd.Series(["10", "1"]), ["1", "2", "10"]).tolist() == [2, 0]
