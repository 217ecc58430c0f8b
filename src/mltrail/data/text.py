"""Labelled text: readers (any text/label CSV, the aclImdb archive), cleaning, label mapping.

Decoding policy: files are read as UTF-8. With ``encoding_errors: replace`` (the default) a
byte that is not valid UTF-8 becomes U+FFFD and the number of rows affected is recorded in the
profile; with ``strict`` such a file is refused with the line's position.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mltrail.contracts.layout import GROUP_COLUMN
from mltrail.data.archive import is_archive, read_member, reading_archive
from mltrail.errors import DataError

TEXT, LABEL = "text", "label"
"""Column names of every reader's output, whatever the input calls them."""
GROUP = GROUP_COLUMN
"""The output's group column, only when ``text.group_column`` declares one."""

REPLACEMENT_CHAR = "\ufffd"

_HTML_TAG = re.compile(
    r"</?(?:br|p|i|b|em|strong|u|a|hr|div|span|li|ul|ol|h[1-6])\b[^>]{0,200}>", re.IGNORECASE
)
_SPACE = re.compile(r"\s+")
_ACLIMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(neg|pos)/(\d+)_(\d+)\.txt$")
ACLIMDB_LABELS = {"neg": 0, "pos": 1}
"""aclImdb folder -> label, the same coding as the IMDB CSV (0 negative, 1 positive); params.yaml's
``text.class_names`` names them back ``neg`` and ``pos``, whichever of the two was read."""


def read_labelled_text(
    path: Path,
    text_column: str,
    label_column: str,
    encoding_errors: str,
    group_column: str | None = None,
) -> pd.DataFrame:
    """Read ``path`` into a frame with columns ``text`` and ``label`` (both str), and ``group``
    when ``group_column`` names one.

    ``*.tar.gz`` / ``*.tgz`` / ``*.tar`` are read as the aclImdb archive layout
    (``aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt``); anything else as CSV (gzip, bz2,
    xz and zip inferred from the name).
    """
    if is_archive(path):
        if group_column is not None:
            raise DataError(
                f"text.group_column is {group_column!r}, but {path} is the aclImdb archive, "
                "which has no group column",
                hint="use a CSV with that column (text.source.path), or set text.group_column=null",
            )
        return read_aclimdb_archive(path, encoding_errors)
    return read_text_csv(path, text_column, label_column, encoding_errors, group_column)


def read_text_csv(
    path: Path,
    text_column: str,
    label_column: str,
    encoding_errors: str,
    group_column: str | None = None,
) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,  # "NA" or "null" in a review is text, not a missing value
            encoding="utf-8",
            encoding_errors=encoding_errors,
        )
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path} is empty: no header and no rows",
            hint=f"a text CSV needs a header with {text_column!r} and {label_column!r} columns",
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 ({exc.reason} at byte {exc.start})",
            hint="set text.encoding_errors=replace to replace undecodable bytes",
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}") from None
    except (EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})",
            hint="delete it and fetch it again",
        ) from None
    wanted = [text_column, label_column] + ([group_column] if group_column else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        keys = "text.text_column and text.label_column"
        if group_column in missing:
            keys = "text.group_column" if len(missing) == 1 else f"{keys} and text.group_column"
        raise DataError(
            f"{path} has no column {' or '.join(repr(c) for c in missing)}; "
            f"its columns are {list(frame.columns)}",
            hint=f"set {keys} to the right names"
            + (" (text.group_column=null: no group metrics)" if group_column in missing else ""),
        )
    out = frame[wanted]
    out.columns = pd.Index([TEXT, LABEL, GROUP][: len(wanted)])
    return out.reset_index(drop=True)


def read_aclimdb_archive(path: Path, encoding_errors: str) -> pd.DataFrame:
    """Read the labelled reviews of ``aclImdb_v1.tar.gz`` in the official order.

    Order: train then test; in each, negative then positive; in each, ascending review id
    (the order of the IMDB CSV). Unlabelled reviews (``train/unsup``) are skipped.
    """
    rows: list[tuple[int, int, int, str]] = []
    with reading_archive(path) as tar:
        for member in tar:
            match = _ACLIMDB_MEMBER.search(member.name)
            if match is None or not member.isfile():
                continue
            split, folder, review_id, _rating = match.groups()
            try:
                text = read_member(tar, member).decode("utf-8", errors=encoding_errors)
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{member.name} in {path} is not valid UTF-8 ({exc.reason} at byte "
                    f"{exc.start})",
                    hint="set text.encoding_errors=replace to replace undecodable bytes",
                ) from None
            order = (0 if split == "train" else 1, ACLIMDB_LABELS[folder], int(review_id))
            rows.append((*order, text))
    if not rows:
        raise DataError(
            f"{path} holds no aclImdb/{{train,test}}/{{neg,pos}}/*.txt reviews",
            hint="is it the aclImdb archive? a CSV must be named *.csv or *.csv.gz",
        )
    rows.sort(key=lambda r: r[:3])
    return pd.DataFrame({TEXT: [r[3] for r in rows], LABEL: [str(r[1]) for r in rows]})


@dataclass(frozen=True)
class CleanReport:
    rows_read: int
    missing_labels: int
    empty_texts: int
    duplicates: int
    decode_replacements: int
    rows_kept: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def clean_text(text: str, strip_html: bool) -> str:
    if strip_html:
        text = _HTML_TAG.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def clean_frame(
    frame: pd.DataFrame,
    *,
    strip_html: bool,
    min_chars: int,
    drop_duplicates: bool,
    missing_labels: str,
) -> tuple[pd.DataFrame, CleanReport]:
    """Normalise texts, handle missing labels, drop empty and duplicate texts."""
    rows_read = len(frame)
    if rows_read == 0:
        raise DataError("the data has a header but no rows", hint="check the file")
    labels = frame[LABEL].astype(str).str.strip()
    no_label = labels == ""
    if no_label.any() and missing_labels == "error":
        first = [int(i) + 2 for i in np.flatnonzero(no_label.to_numpy())[:5]]  # +2: header, 1-based
        raise DataError(
            f"{int(no_label.sum())} of {rows_read} rows have no label (first at CSV lines {first})",
            hint="fill them in, or set text.missing_labels=drop to leave those rows out",
        )
    groups = _groups(frame)
    decode_replacements = int(frame[TEXT].str.contains(REPLACEMENT_CHAR, regex=False).sum())
    texts = frame[TEXT].map(lambda t: clean_text(t, strip_html))
    keep = ~no_label & (texts.str.len() >= min_chars)
    empty_texts = int((~no_label & ~keep).sum())
    cleaned = pd.DataFrame({TEXT: texts[keep], LABEL: labels[keep]})
    if groups is not None:
        cleaned[GROUP] = groups[keep]
    before = len(cleaned)
    if drop_duplicates:
        cleaned = cleaned.drop_duplicates(subset=TEXT, keep="first")
    cleaned = cleaned.reset_index(drop=True)
    report = CleanReport(
        rows_read=rows_read,
        missing_labels=int(no_label.sum()),
        empty_texts=empty_texts,
        duplicates=before - len(cleaned),
        decode_replacements=decode_replacements,
        rows_kept=len(cleaned),
    )
    if cleaned.empty:
        raise DataError(f"no rows left after cleaning: {report.as_dict()}")
    return cleaned, report


def _groups(frame: pd.DataFrame) -> pd.Series | None:
    """The stripped group values, when the frame has a group column. A row without one is an
    error, not a group of its own: an unnamed group would be measured and reported as if it
    were a real one (fill the values in, or leave those rows out of the file)."""
    if GROUP not in frame.columns:
        return None
    groups = frame[GROUP].astype(str).str.strip()
    empty = groups == ""
    if empty.any():
        first = [int(i) + 2 for i in np.flatnonzero(empty.to_numpy())[:5]]  # +2: header, 1-based
        raise DataError(
            f"{int(empty.sum())} of {len(frame)} rows have no value in the group column "
            f"(text.group_column; first at CSV lines {first})",
            hint="give every row a group (e.g. 'unknown' as a group of its own), or set "
            "text.group_column=null",
        )
    return groups


def label_classes(labels: pd.Series) -> list[str]:
    """The sorted class names; integer labels sort numerically ("2" before "10")."""
    values = sorted(set(labels))
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return sorted(values, key=int)
    return values


def name_classes(values: list[str], names: Mapping[str, str] | None) -> list[str]:
    """The class names of the label ``values`` (as ``label_classes`` orders them), from
    ``text.class_names``; the values themselves without it. The order is the values', never
    the names': naming the classes does not renumber them."""
    if names is None:
        return list(values)
    missing = [v for v in values if v not in names]
    if missing:
        shown = ", ".join(map(repr, missing[:10])) + (
            f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        )
        raise DataError(
            f"label value{'s' if len(missing) > 1 else ''} {shown} "
            f"{'are' if len(missing) > 1 else 'is'} in the data but not in text.class_names "
            f"(which names {', '.join(map(repr, names))})",
            hint="set text.class_names=null to use the data's labels as class names"
            if len(missing) == len(values)
            else "add a name for each value to text.class_names, or set it to null",
        )
    return [names[v] for v in values]


def encode_labels(labels: pd.Series, classes: list[str]) -> NDArray[np.int64]:
    index = {name: i for i, name in enumerate(classes)}
    encoded: NDArray[np.int64] = labels.map(index).to_numpy(dtype=np.int64)
    return encoded
