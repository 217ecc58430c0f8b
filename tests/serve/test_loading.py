"""Loading a model to serve: verified against its manifest first, never unpickled."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mltrail.models.text import load_text_model
from mltrail.serve.loading import ModelLoadError, load, verify


def test_a_served_text_model_predicts_as_the_offline_model(model_dirs: dict[str, Path]) -> None:
    served = load(str(model_dirs["text"]), "text")
    offline = load_text_model(model_dirs["text"] / "model.npz")
    texts = ["a good film", "a bad film", "something else entirely"]
    assert np.allclose(served.predict_proba(texts), offline.predict_proba(texts))
    assert served.classes == ["0", "1"]
    profile = served.predict(["good film zzzunknownzzz"])[1][0]
    assert profile["tokens"] == 3 and profile["oov_rate"] == pytest.approx(1 / 3)


def test_a_changed_model_file_is_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(model_dirs["text"], copy)
    with (copy / "model.npz").open("r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    with pytest.raises(ModelLoadError, match="changed after training; refusing to load"):
        verify(copy)


def test_a_missing_model_file_or_manifest_is_refused(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "m"
    shutil.copytree(model_dirs["image"], copy)
    (copy / "model.pt").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.pt is missing") as info:
        load(str(copy), "image")
    assert "dvc pull" in str(info.value)
    (copy / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match=r"has no manifest\.json"):
        load(str(copy), "image")


def test_a_model_of_the_wrong_kind_is_refused(model_dirs: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="is a text model, not an image model"):
        load(str(model_dirs["text"]), "image")


@pytest.mark.parametrize("settings", [
    {},
    {"sublinear_tf": True, "ngram_max": 2},
    {"max_features": 50, "min_df": 2},
])  # fmt: skip
@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_text_scorer_gives_the_pipelines_probabilities(
    settings: dict[str, object], n_classes: int
) -> None:
    from mltrail.config import TrainTextParams
    from mltrail.models.text import TextScorer, build_text_pipeline
    from tests.builders import text_rows

    rows = text_rows(20, classes=range(n_classes))
    texts, labels = [t for t, _ in rows], [int(y) for _, y in rows]
    model = build_text_pipeline(TrainTextParams.model_validate(settings)).fit(texts, labels)
    queries = [*texts[:7], "words never seen anywhere", "", "good GOOD good, film!"]
    probs, counts = TextScorer(model).score(queries)
    assert np.allclose(probs, model.predict_proba(queries), rtol=1e-10, atol=1e-12)
    assert counts[-3][1] == 0 and counts[-2] == (0, 0)
