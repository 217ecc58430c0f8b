from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from mltrail.cli import main
from mltrail.config import Params
from mltrail.contracts.manifest import ReferenceEntry
from mltrail.errors import MltrailError
from mltrail.fsio import sha256_file
from mltrail.models.cnn_io import load_cnn
from mltrail.stages import train_cifar10, train_text
from mltrail.tracking.journal import all_records, read_state
from tests.conftest import PARAMS

Make = Callable[..., Params]
TIMES = {"train_time_s", "predict_time_s"}


def _tracked(make_params: Make, workdir: Path, *more: str) -> Params:
    return make_params(
        f"tracking.mlflow_uri=sqlite:///{workdir / 'mlflow.db'}",
        f"tracking.wandb_dir={workdir}",
        f"tracking.journal_dir={workdir / 'journal'}",
        "tracking.wait=true",
        "tracking.retry_for_s=0",
        *more,
    )


def test_text_metrics_are_identical_under_every_tracker(
    workdir: Path, text_data: Path, make_params: Make
) -> None:
    params = _tracked(make_params, workdir)
    results = {
        t: train_text.run(params, t, text_data, workdir / t.replace(",", "+"))
        for t in ("none", "mlflow", "wandb", "mlflow,wandb")
    }
    scores = [{k: v for k, v in r.metrics.items() if k not in TIMES} for r in results.values()]
    assert all(s == scores[0] for s in scores)
    assert scores[0]["accuracy"] > 0.9  # the fixture's classes are separable
    assert set(results["none"].metrics) == {"accuracy", "f1_macro", "f1_weighted", *TIMES}


def test_the_text_core_trains_in_memory(text_data: Path, make_params: Make) -> None:
    """train_text: frames in, model, scores and reference out; the folder is run()'s business."""
    train, test = (
        pd.read_parquet(text_data / "train.parquet"),
        pd.read_parquet(text_data / "test.parquet"),
    )
    params = make_params().train_text
    trained = train_text.train_text(train, test, ["neg", "pos"], params)
    assert trained.metrics["accuracy"] > 0.9 and trained.reference_source == "test"
    assert list(trained.predicted) == list(trained.model.predict(test["text"]))
    assert len(trained.reference.labels) == len(test)
    held = test.iloc[:6]
    again = train_text.train_text(train, test, ["neg", "pos"], params, reference=held)
    assert again.reference_source == "feedback" and len(again.reference.labels) == 6
    assert again.metrics["accuracy"] == trained.metrics["accuracy"]


def test_the_cnn_core_trains_in_memory(cifar_data: Path, make_params: Make) -> None:
    with np.load(cifar_data / "train.npz") as tr, np.load(cifar_data / "test.npz") as te:
        train, test = (tr["x"], tr["y"]), (te["x"], te["y"])
    params = make_params("train_cifar10.epochs=2", "train_cifar10.batch_size=32").train_cifar10
    heard: list[int] = []
    classes = [f"c{i}" for i in range(10)]
    trained = train_cifar10.train_cifar10(
        train, test, classes, params, on_epoch=lambda r: heard.append(r.epoch), progress=False
    )
    assert heard == [1, 2] and trained.metrics["epochs"] == 2.0
    assert not trained.model.training and trained.reference_source == "test"
    assert trained.saliency.labels == list(range(10))  # one held-out image per class


def test_text_outputs_and_manifest(workdir: Path, text_data: Path, make_params: Make) -> None:
    out = workdir / "model"
    manifest = train_text.run(_tracked(make_params, workdir), "mlflow", text_data, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png", "explain.json", "manifest.json", "metrics.json", "model.npz",
        "per_class.json", "predictions.csv", "reference.npz",
    ]  # fmt: skip
    # The monitoring reference is part of the model: named and hashed by the manifest.
    assert manifest.model.info.reference == ReferenceEntry(
        file="reference.npz", sha256=sha256_file(out / "reference.npz"), source="test"
    )
    top = json.loads((out / "explain.json").read_text())["top_terms"]
    assert set(top) == {"neg", "pos"} and top["pos"][0]["weight"] > 0
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest.to_json() and on_disk["schema_version"] == 1
    assert manifest.model.sha256 == sha256_file(out / "model.npz")
    profile = json.loads((text_data / "profile.json").read_text())
    assert manifest.data.content_sha256 == profile["content_sha256"]
    assert manifest.params["max_iter"] == 1000 and len(manifest.params_sha256) == 64
    assert manifest.stage == "train_text_mlflow"
    assert manifest.libraries["scikit-learn"]
    assert json.loads((out / "metrics.json").read_text()) == manifest.metrics
    journal = Path(str(manifest.tracking.journal))
    state = read_state(journal, "mlflow")
    assert state is not None and state["status"] == "done"
    ops = [r["op"] for r in all_records(journal)]
    assert ops[0] == "start" and ops[-1] == "end" and "model" in ops


def test_lineage_prints_the_chain(
    workdir: Path, text_data: Path, make_params: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    out = workdir / "model"
    manifest = train_text.run(_tracked(make_params, workdir), "mlflow", text_data, out)
    assert main(["lineage", str(out)]) == 0
    text = capsys.readouterr().out
    state = read_state(Path(str(manifest.tracking.journal)), "mlflow")
    assert state is not None and f"run {state['run_id']}" in text
    assert "matches the file" in text and manifest.model.sha256[:16] in text
    (out / "model.npz").write_bytes(b"tampered")
    assert main(["lineage", str(out)]) == 2
    assert "DOES NOT MATCH" in capsys.readouterr().out


def test_failure_inside_training_marks_the_run_failed_and_writes_nothing(
    workdir: Path, text_data: Path, make_params: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(params: object) -> object:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(train_text, "build_text_pipeline", explode)
    out = workdir / "model"
    with pytest.raises(RuntimeError, match="out of memory"):
        train_text.run(_tracked(make_params, workdir), "mlflow", text_data, out)
    assert not out.exists()
    (journal,) = (workdir / "journal").iterdir()
    assert all_records(journal)[-1]["status"] == "failed"
    client = mlflow.tracking.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FAILED"


def test_unprepared_data_is_a_clear_error(workdir: Path, make_params: Make) -> None:
    with pytest.raises(MltrailError, match=r"lacks train\.parquet"):
        train_text.run(make_params(), "none", workdir, workdir / "model")


def test_cnn_trains_and_mlflow_serves_the_same_model(
    workdir: Path, cifar_data: Path, make_params: Make
) -> None:
    params = _tracked(make_params, workdir, "train_cifar10.epochs=2", "train_cifar10.batch_size=32")
    out = workdir / "cnn"
    manifest = train_cifar10.run(params, "mlflow", cifar_data, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png", "curves.png", "history.csv", "manifest.json", "metrics.json",
        "model.onnx", "model.pt", "per_class.json", "reference.npz", "saliency.png",
    ]  # fmt: skip
    # The ONNX copy the server runs is part of the model: named and hashed by the manifest.
    onnx = manifest.model.info.onnx
    assert onnx is not None and onnx.file == "model.onnx"
    assert onnx.sha256 == sha256_file(out / "model.onnx")
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss") and len(history) == 3
    assert {"accuracy", "test_loss", "train_time_s", "predict_time_s"} <= set(manifest.metrics)
    model = load_cnn(out / "model.pt", "fast")
    with np.load(cifar_data / "test.npz") as test:
        x = torch.from_numpy(test["x"][:8])
    with torch.inference_mode():
        local = model(x).numpy()
    state = read_state(Path(str(manifest.tracking.journal)), "mlflow")
    assert state is not None and state["status"] == "done", state
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model(f"runs:/{state['run_id']}/model").predict(x.numpy())
    assert np.allclose(np.asarray(served), local, atol=1e-5)
    # mltrail's own copy in the run (mltrail-model) carries model.onnx: served by ONNX Runtime.
    from mltrail.models.loading import load

    ours = load(f"runs:/{state['run_id']}/mltrail-model", "image")
    assert ours.runtime == "onnx"
    probs = ours.predict_proba(x.numpy())
    assert np.allclose(probs, torch.softmax(torch.from_numpy(local), 1).numpy(), atol=1e-5)
    run = mlflow.tracking.MlflowClient().get_run(state["run_id"])
    steps = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "test_accuracy")
    assert [m.step for m in steps] == [1, 2]


def test_cnn_is_seeded(workdir: Path, cifar_data: Path, make_params: Make) -> None:
    params = make_params("train_cifar10.epochs=1", "train_cifar10.batch_size=32")
    a = train_cifar10.run(params, "none", cifar_data, workdir / "a", progress=False)
    b = train_cifar10.run(params, "none", cifar_data, workdir / "b", progress=False)
    assert a.metrics["test_loss"] == b.metrics["test_loss"]
    assert sha256_file(workdir / "a/model.pt") == sha256_file(workdir / "b/model.pt")


def test_paper_recipe_is_a_params_choice(
    workdir: Path, cifar_data: Path, make_params: Make
) -> None:
    params = make_params("train_cifar10.recipe=paper", "train_cifar10.epochs=1")
    manifest = train_cifar10.run(params, "none", cifar_data, workdir / "p", progress=False)
    assert manifest.params["recipe"] == "paper"
    model = load_cnn(workdir / "p/model.pt", "paper")
    assert sum(p.numel() for p in model.parameters()) == 122_570  # the TF tutorial's count


def test_cli_train_with_an_unknown_tracker(
    workdir: Path, text_data: Path, capsys: pytest.CaptureFixture[str], no_mirror: None
) -> None:
    code = main(["train", "text", "--params", str(PARAMS), "--data", str(text_data),
                 "--out", str(workdir / "m"), "--tracker", "mlflow,neptune"])  # fmt: skip
    assert code == 1
    assert "unknown tracker 'neptune'" in capsys.readouterr().err
    assert not (workdir / "m").exists()
