"""Stage ``prepare_data_text``: a labelled text file -> cleaned, sampled, stratified split.

Outputs (one folder, written atomically): ``train.parquet`` and ``test.parquet`` (columns
``text`` and ``label``, the class index, and ``group`` when ``text.group_column`` declares
one), ``labels.json`` (index -> class name, from
``text.class_names`` when the data's labels are codes such as IMDB's 0/1) and
``profile.json`` (rows, class balance, text lengths, content hash, the feedback batches
added: see ``mltrail.data.feedback``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mltrail.config import Params, TextParams
from mltrail.contracts.tasks import task_spec
from mltrail.data import feedback
from mltrail.data.profile import text_content_hash, text_profile
from mltrail.data.sources import FetchedFile
from mltrail.data.split import stratified_split, stratified_subset
from mltrail.data.text import (
    GROUP,
    LABEL,
    TEXT,
    clean_frame,
    encode_labels,
    label_classes,
    name_classes,
    read_labelled_text,
)
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_dir, write_json
from mltrail.stages.common import fetch_source, provenance

log = logging.getLogger(__name__)
TASK = task_spec("text")


@dataclass(frozen=True)
class PreparedText:
    train: pd.DataFrame
    test: pd.DataFrame
    classes: list[str]
    profile: dict[str, Any]


def prepare_text(
    raw: pd.DataFrame, params: TextParams, feedback: pd.DataFrame | None = None
) -> PreparedText:
    """Clean ``raw`` (columns text, label), sample and split it, and add ``feedback`` (text,
    label as class index: labelled production data) to the training split; no file access."""
    cleaned, report = clean_frame(
        raw,
        strip_html=params.strip_html,
        min_chars=params.min_chars,
        drop_duplicates=params.drop_duplicates,
        missing_labels=params.missing_labels,
    )
    values = label_classes(cleaned[LABEL])
    y = encode_labels(cleaned[LABEL], values)
    classes = name_classes(values, params.class_names)
    unused = sorted(set(params.class_names or {}) - set(values))
    if unused:
        log.warning("text.class_names names values the data does not have: %s", unused)
    keep = stratified_subset(y, params.sample_rows, params.seed, "text.sample_rows", classes)
    texts, y = cleaned[TEXT].to_numpy()[keep], y[keep]
    train_idx, test_idx = stratified_split(y, params.test_fraction, params.seed, classes)
    train = pd.DataFrame({TEXT: texts[train_idx], LABEL: y[train_idx]})
    test = pd.DataFrame({TEXT: texts[test_idx], LABEL: y[test_idx]})
    if GROUP in cleaned.columns:  # declared by text.group_column: carried beside each row
        groups = cleaned[GROUP].to_numpy()[keep]
        train[GROUP], test[GROUP] = groups[train_idx], groups[test_idx]
    added = 0
    if feedback is not None and len(feedback):
        bad = sorted(set(feedback[LABEL]) - set(range(len(classes))))
        if bad:
            raise MltrailError(
                f"feedback labels {bad[:5]} are not class indices 0-{len(classes) - 1}"
            )
        extra = [feedback[[TEXT, LABEL]]] * params.feedback_repeat
        train = pd.concat([train, *extra], ignore_index=True)  # feedback: no group (null)
        added = len(feedback)
    profile = {
        "task": "text",
        "cleaning": report.as_dict(),
        "classes": classes,
        "rows": {"train": len(train), "test": len(test), "feedback": added},
        "train": text_profile(train[TEXT].tolist(), train[LABEL].to_numpy(), classes),
        "test": text_profile(test[TEXT].tolist(), test[LABEL].to_numpy(), classes),
        "content_sha256": text_content_hash(
            [*train[TEXT], *test[TEXT]], [*train[LABEL], *test[LABEL]]
        ),
    }
    if GROUP in test.columns:
        profile["groups"] = {
            "column": params.group_column,
            "train": _group_counts(train[GROUP]),
            "test": _group_counts(test[GROUP]),
            "train_without_group": int(train[GROUP].isna().sum()),
        }
    return PreparedText(train, test, classes, profile)


def _group_counts(groups: pd.Series) -> dict[str, int]:
    """Rows per group, largest first (rows without a group, added feedback, not counted)."""
    return {str(k): int(v) for k, v in groups.dropna().value_counts().items()}


def write_prepared_text(
    prepared: PreparedText,
    out_dir: Path,
    source: FetchedFile,
    params: TextParams,
    reference: pd.DataFrame | None = None,
) -> None:
    """``reference``: held-out feedback the trained models are monitored against
    (``reference.parquet``; without it, the test split is their reference)."""
    layout = TASK.prepared
    with atomic_dir(out_dir) as tmp:
        prepared.train.to_parquet(tmp / layout.train, index=False)
        prepared.test.to_parquet(tmp / layout.test, index=False)
        if reference is not None:
            reference.to_parquet(tmp / layout.reference, index=False)
        layout.write_classes(tmp, prepared.classes)
        write_json(tmp / layout.profile, prepared.profile | provenance(source, params))


def run(params: Params, out_dir: Path, download_dir: Path, progress: bool = True) -> PreparedText:
    text = params.text
    source = fetch_source(params, text.source, download_dir, progress)
    raw = read_labelled_text(
        source.path, text.text_column, text.label_column, text.encoding_errors, text.group_column
    )
    folder = Path(text.feedback_dir) if text.feedback_dir else None
    batches = feedback.batch_files(folder, TASK.task)
    prepared = prepare_text(raw, text, feedback.read_text_batches(batches))
    prepared.profile["feedback"] = feedback.provenance(batches)
    newest = feedback.batch_files(folder, TASK.task, "eval")[-1:]
    recent = feedback.read_text_batches(newest, recent_only=True)
    reference = recent if newest and len(recent) >= max(text.reference_min_feedback, 1) else None
    prepared.profile["reference"] = (
        {"source": "feedback", "batch": newest[0].name, "rows": len(recent)}
        if reference is not None
        else {"source": "test"}
    )
    write_prepared_text(prepared, out_dir, source, text, reference)
    rows = prepared.profile["rows"]
    log.info(
        "wrote %s: %d train, %d test rows, %d classes",
        out_dir,
        rows["train"],
        rows["test"],
        len(prepared.classes),
    )
    return prepared
