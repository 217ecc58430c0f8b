"""Labelled production data: batches written, split, read back by prepare; refused when
DVC lists a batch whose data is not here."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mltrail.data import feedback
from mltrail.errors import MltrailError


def test_a_text_batch_is_split_by_id_and_read_back(tmp_path: Path) -> None:
    ids = [f"id{i}" for i in range(1000)]
    batch = feedback.write_batch(tmp_path, "text", "s1", ids, [f"text {i}" for i in ids],
                                 [i % 2 for i in range(1000)], eval_fraction=0.3)  # fmt: skip
    assert batch.rows["train"] + batch.rows["eval"] == 1000
    assert 250 < batch.rows["eval"] < 350
    again = feedback.write_batch(tmp_path / "again", "text", "s1", ids, list(ids),
                                 [0] * 1000, eval_fraction=0.3)  # fmt: skip
    assert again.rows == batch.rows  # the same ids land on the same side
    train = feedback.read_text_batches(feedback.batch_files(tmp_path, "text"))
    assert len(train) == batch.rows["train"] and train["label"].dtype == np.int64
    evaluation = feedback.read_text_batches(feedback.batch_files(tmp_path, "text", "eval"))
    assert not set(train["text"]) & set(evaluation["text"])


def test_an_image_batch_round_trips_its_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    encoded = [base64.b64encode(p.tobytes()).decode() for p in pixels]
    batch = feedback.write_batch(tmp_path, "cifar10", "s", [str(i) for i in range(20)], encoded,
                                 list(range(10)) * 2, eval_fraction=0.5)  # fmt: skip
    x, y = feedback.read_image_batches([batch.train, batch.eval])
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32
    assert sorted(y.tolist()) == sorted(list(range(10)) * 2)
    assert np.allclose(np.sort(x.reshape(20, -1).sum(1)),
                       np.sort(pixels.reshape(20, -1).sum(1) / 255.0), rtol=1e-5)  # fmt: skip
    with pytest.raises(MltrailError, match="expected 3,072"):
        feedback.decode_image(base64.b64encode(b"short").decode())


def test_a_batch_dvc_lists_but_that_is_not_here_stops_prepare(tmp_path: Path) -> None:
    (tmp_path / "train-x.parquet.dvc").write_text("outs:\n- path: train-x.parquet\n")
    with pytest.raises(MltrailError, match="dvc pull"):
        feedback.batch_files(tmp_path, "text")


def test_prepare_adds_feedback_to_the_training_split_only() -> None:
    from mltrail.config import TextParams
    from mltrail.stages.prepare_text import prepare_text
    from tests.builders import text_rows

    raw = pd.DataFrame(text_rows(20), columns=["text", "label"]).astype({"label": str})
    params = TextParams.model_validate({"source": {"path": "x.csv"}})
    extra = pd.DataFrame({"text": ["new words here", "more new words"], "label": [1, 0]})
    base, added = prepare_text(raw, params), prepare_text(raw, params, extra)
    assert len(added.train) == len(base.train) + 2 and added.test.equals(base.test)
    assert added.profile["rows"]["feedback"] == 2
    assert added.profile["content_sha256"] != base.profile["content_sha256"]
    with pytest.raises(MltrailError, match="not class indices"):
        prepare_text(raw, params, pd.DataFrame({"text": ["x"], "label": [7]}))


def test_recent_rows_are_marked_and_read_alone(tmp_path: Path) -> None:
    ids = [f"id{i}" for i in range(200)]
    batch = feedback.write_batch(tmp_path, "text", "s", ids, ids, [0] * 200, eval_fraction=0.5,
                                 recent=[i >= 150 for i in range(200)])  # fmt: skip
    recent = feedback.read_text_batches([batch.eval], recent_only=True)
    assert len(recent) == batch.rows["eval_recent"] < batch.rows["eval"]
    assert all(int(t.removeprefix("id")) >= 150 for t in recent["text"])


def test_the_shift_starts_at_the_first_flagged_check_of_the_current_streak(
    tmp_path: Path,
) -> None:
    import json

    from mltrail.release.retrain import _shift_started

    checks = [("ok", 10.0), ("warn", 20.0), ("ok", 30.0), ("warn", 40.0), ("retrain", 50.0)]
    lines = [json.dumps({"decision": d, "time": t, "model_version": "m@1",
                         "window": {"from": t - 5}}) for d, t in checks]  # fmt: skip
    lines.append(json.dumps({"decision": "warn", "time": 1.0, "model_version": "other@2"}))
    (tmp_path / "decisions.jsonl").write_text("\n".join(lines) + "\n")
    assert _shift_started(tmp_path, "m@1") == 40.0
    # Only this pass's own check flagged it: the start of its window.
    (tmp_path / "decisions.jsonl").write_text("\n".join(lines[:4]) + "\n")
    assert _shift_started(tmp_path, "m@1") == 35.0
    assert _shift_started(tmp_path, "never@0") == 0.0
