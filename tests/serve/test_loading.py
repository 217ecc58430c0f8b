"""Loading a model to serve: verified against its manifest first, never unpickled."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mltrail.contracts.manifest import Manifest
from mltrail.models.loading import ModelLoadError, load, verify
from mltrail.models.text import load_text_model


def test_a_served_text_model_predicts_as_the_offline_model(model_dirs: dict[str, Path]) -> None:
    served = load(str(model_dirs["text"]), "text")
    offline = load_text_model(model_dirs["text"] / "model.npz")
    texts = ["a good film", "a bad film", "something else entirely"]
    assert np.allclose(served.predict_proba(texts), offline.predict_proba(texts))
    assert served.classes == ["neg", "pos"]  # params.yaml's text.class_names
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
    texts, labels = [t for t, _ in rows], [int(str(y)) for _, y in rows]
    model = build_text_pipeline(TrainTextParams.model_validate(settings)).fit(texts, labels)
    queries = [*texts[:7], "words never seen anywhere", "", "good GOOD good, film!"]
    probs, counts = TextScorer(model).score(queries)
    assert np.allclose(probs, model.predict_proba(queries), rtol=1e-10, atol=1e-12)
    assert counts[-3][1] == 0 and counts[-2] == (0, 0, ())


def test_a_model_is_served_from_mlflow_by_run_and_by_registered_alias(
    text_data: Path, make_params: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``runs:/<id>/mltrail-model`` and ``models:/<name>@<alias>``: mltrail's own files,
    logged beside MLflow's flavor, fetched from the store and verified like a folder."""
    from mlflow.tracking import MlflowClient

    import mltrail.stages.train_text as train_text

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    params = make_params(f"tracking.mlflow_uri={uri}", "tracking.wait=true")
    manifest = train_text.run(params, "mlflow", text_data, workdir / "model")
    run_id = _mlflow_run_id(workdir, manifest)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    by_run = load(f"runs:/{run_id}/mltrail-model", "text")
    assert by_run.manifest == manifest
    client = MlflowClient(uri)
    client.create_registered_model("imdb")
    version = client.create_model_version("imdb", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("imdb", "champion", version.version)
    by_alias = load("models:/imdb@champion", "text")
    texts = ["a good film", "a bad film"]
    assert np.allclose(by_alias.predict_proba(texts), by_run.predict_proba(texts))
    assert load("models:/imdb/1", "text").version == by_run.version
    with pytest.raises(ModelLoadError, match="cannot fetch models:/imdb@nobody"):
        load("models:/imdb@nobody", "text")


def _mlflow_run_id(workdir: Path, manifest: Manifest) -> str:
    from mltrail.tracking.journal import read_state

    state = read_state(Path(str(manifest.tracking.journal)), "mlflow")
    assert state is not None and state["status"] == "done"
    return str(state["run_id"])
