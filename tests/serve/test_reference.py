"""References: built from held-out data the way serving measures traffic, stored safely,
verified on load; explanations of text predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mltrail.errors import MltrailError
from mltrail.models.loading import ModelLoadError, load
from mltrail.models.reference import load_reference

TEXTS = ["a good film number 3", "a bad film", "words never seen"]


def test_the_served_text_profile_is_the_reference_measurement(model_dirs: dict[str, Path]) -> None:
    from mltrail.models.text import load_text_model

    model = load(str(model_dirs["text"]), "text")
    reference = load_reference(model_dirs["text"] / "reference.npz")
    test = pd.read_parquet(model_dirs["text_data"] / "test.parquet")
    # The reference holds the held-out split, measured by the serving code.
    probs, profiles = model.predict(test["text"].tolist())
    assert np.allclose(reference.features["chars"], [p["chars"] for p in profiles])
    assert np.allclose(reference.features["proj_0"], [p["proj_0"] for p in profiles], atol=1e-6)
    assert np.array_equal(reference.predicted, probs.argmax(axis=1))
    assert reference.accuracy == pytest.approx(np.mean(probs.argmax(axis=1) == test["label"]))
    # The projection is the TF-IDF vector (scikit-learn's own) times the stored directions.
    pipeline = load_text_model(model_dirs["text"] / "model.npz")
    expected = pipeline.named_steps["tfidf"].transform(TEXTS) @ reference.projection
    _, served = model.predict(TEXTS)
    got = np.array([[p[f"proj_{i}"] for i in range(expected.shape[1])] for p in served])
    assert np.allclose(got, expected, atol=1e-6)
    assert served[2]["oov_rate"] == 1.0


def test_the_image_reference_projects_the_cnns_features(model_dirs: dict[str, Path]) -> None:
    model = load(str(model_dirs["image"]), "image")
    reference = load_reference(model_dirs["image"] / "reference.npz")
    with np.load(model_dirs["image_data"] / "test.npz") as z:
        x = z["x"]
    _, profiles = model.predict(x)
    assert set(profiles[0]) == set(reference.features)
    assert np.allclose(reference.features["brightness"], [p["brightness"] for p in profiles],
                       atol=1e-6)  # fmt: skip
    assert np.allclose(reference.features["proj_1"], [p["proj_1"] for p in profiles], atol=1e-4)
    assert reference.kind == "image" and len(reference.classes) == 10


def test_a_changed_reference_is_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dirs["text"], copy)
    data = dict(np.load(copy / "reference.npz"))
    data["confidence"] = np.ones_like(data["confidence"])
    np.savez_compressed(copy / "reference.npz", **data)
    with pytest.raises(ModelLoadError, match=r"reference\.npz is missing or differs"):
        load(str(copy), "text")
    (copy / "reference.npz").write_bytes(b"not an npz")
    with pytest.raises(MltrailError, match="not an mltrail reference"):
        load_reference(copy / "reference.npz")


def test_a_text_explanation_names_the_terms_that_drove_it(model_dirs: dict[str, Path]) -> None:
    model = load(str(model_dirs["text"]), "text")
    assert model.explain is not None
    probs = model.predict_proba(["a good film"])
    label = int(probs.argmax())
    terms = model.explain("a good film", label)
    assert terms[0]["term"] == "good" and float(terms[0]["weight"]) > 0  # class 1 is "good"
    # Exact for a linear model: the contributions add up to the logit less the intercept.
    from mltrail.models.text import TextScorer, load_text_model

    pipeline = load_text_model(model_dirs["text"] / "model.npz")
    scorer = TextScorer(pipeline)
    decision = pipeline.decision_function(["a good film"])[0] - scorer.intercept[0]
    assert sum(float(t["weight"]) for t in terms) == pytest.approx(decision)
    assert (
        json.loads((model_dirs["text"] / "explain.json").read_text())["top_terms"]["pos"][0]["term"]
        == "good"
    )


def _store(path: Path, model_dir: Path, texts: list[str]) -> None:
    from mltrail.telemetry import Prediction, open_store

    model = load(str(model_dir), "text")
    probs, profiles = model.predict(texts)
    sink = open_store(str(path))
    sink.write([
        Prediction(f"p{i}", 1000.0 + i, "/predict/text", model.version, int(row.argmax()),
                   model.classes[int(row.argmax())], float(row.max()), 0.5, profile)
        for i, (row, profile) in enumerate(zip(probs, profiles, strict=True))
    ])  # fmt: skip
    sink.close()


def test_the_monitor_command_checks_a_model_and_exits_on_retrain(
    model_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mltrail.cli import main

    test = pd.read_parquet(model_dirs["text_data"] / "test.parquet")["text"].tolist()
    _store(tmp_path / "ok.db", model_dirs["text"], (test * 10)[:150])
    args = ["monitor", "--model", str(model_dirs["text"]), "--retrain-exit-code", "3"]
    assert main([*args, "--store", str(tmp_path / "ok.db"), "--out", str(tmp_path / "a")]) == 0
    assert "ok: text model" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "report.html", "check.json", "summary.json", "monitor.prom", "decisions.jsonl",
    }  # fmt: skip
    shifted = [f"an superb movie, take {i}" for i in range(150)]
    _store(tmp_path / "shift.db", model_dirs["text"], shifted)
    assert main([*args, "--store", str(tmp_path / "shift.db"), "--out", str(tmp_path / "b")]) == 3
    out = capsys.readouterr().out
    assert out.startswith("retrain:") and "oov_rate" in out
    assert main([*args, "--store", str(tmp_path / "shift.db"), "--json"]) == 3
    check = json.loads(capsys.readouterr().out)  # --json: the check, as check.json holds it
    assert check["decision"] == "retrain" and check["predictions"] == 150
    assert main([*args, "--store", str(tmp_path / "shift.db"), "--summary-out", "x.json"]) == 1
    assert "--summary-out writes the summary of a window" in capsys.readouterr().err
