"""The loop end to end in a copy of the repository: a real server with input capture, real
feedback over HTTP, the real DVC pipeline, MLflow's registry, and the pointer-file reload.

Traffic shifts to words the model never saw (labels still meaningful), so live accuracy
drops; the loop adds the labelled inputs as a DVC-tracked batch, re-runs the serving stage,
promotes the better candidate, and the server serves it. Then: a worse candidate is not
promoted, and a retrain that fails leaves the serving model untouched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mltrail.config import Params, load_params
from mltrail.contracts.pointer import Pointer
from mltrail.errors import MltrailError
from mltrail.release.promote import promote
from mltrail.release.retrain import retrain_once
from mltrail.telemetry import read_labelled
from tests.builders import text_rows, write_csv
from tests.conftest import copy_repository, set_params
from tests.serve.conftest import API_KEY, Server, start_server

pytestmark = pytest.mark.slow


def shifted(n: int, start: int) -> list[tuple[str, int]]:
    """Reviews in words the training data never used: the model cannot read them."""
    return [(f"an {'superb' if c else 'awful'} movie, take {i}", c)
            for i in range(start, start + n) for c in (0, 1)]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = copy_repository(tmp_path_factory.mktemp("loop"))
    csv = write_csv(root / "reviews.csv", text_rows(80))
    set_params(
        root,
        text={"source": {"path": str(csv)}},
        tracking={"wait": True, "retry_for_s": 0},
        monitor={"min_feedback": 20, "min_predictions": 50},
    )
    old = Path.cwd()
    os.chdir(root)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ["PATH"] = path
    try:
        yield root
    finally:
        os.chdir(old)


def _params(project: Path) -> Params:
    return load_params(project / "params.yaml")


def _traffic(server: Server, rows: list[tuple[str, int]]) -> float:
    """Predict every text, send its true label as feedback; the served accuracy."""
    correct = 0
    with server.client() as client:
        for start in range(0, len(rows), 20):
            chunk = rows[start : start + 20]
            r = client.post("/predict/text", json={"texts": [t for t, _ in chunk]})
            assert r.status_code == 200, r.text
            for prediction, (_, label) in zip(r.json()["predictions"], chunk, strict=True):
                correct += prediction["label"] == label
                f = client.post("/feedback", json={"prediction_id": prediction["prediction_id"],
                                                   "label": label})  # fmt: skip
                assert f.status_code == 200, f.text
    return correct / len(rows)


def _wait_stored(store: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if len(read_labelled(store, "/predict/text")) >= n:
                return
        except MltrailError:  # the server creates its store with the first batch
            pass
        assert time.monotonic() < deadline, "the server did not store its telemetry"
        time.sleep(0.2)


def _serving(server: Server) -> str:
    with server.client() as client:
        return str(client.get("/version").json()["models"]["text"]["version"])


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Server]:
    import subprocess

    subprocess.run([sys.executable, "-m", "dvc", "repro", "train_text_mlflow"], check=True,
                   capture_output=True)  # fmt: skip
    record = promote(project / "models/text/mlflow", _params(project), {"initial": True})
    assert record["registry"]["version"] == "1"
    running = start_server(
        project / "srv", {"text": Path(record["release"]).resolve(), "image": Path()},
        image_model=None,
        pointer_file=str(project / "releases/serving.json"), capture_inputs=1.0,
    )  # fmt: skip
    yield running
    running.stop()


def test_a_drop_in_live_accuracy_retrains_evaluates_promotes_and_serves(
    project: Path, server: Server
) -> None:
    from mlflow.tracking import MlflowClient

    store = str(server.workdir / "telemetry.db")
    before = _serving(server)
    assert _traffic(server, shifted(60, 0)) < 0.75  # the model cannot read the new words
    _wait_stored(store, 120)
    params = _params(project)
    record = retrain_once(params, store, Path("monitoring"), server=server.url, api_key=API_KEY)
    steps = {s["step"]: s for s in record["steps"]}
    assert steps["check"]["decision"] == "retrain"
    assert any("live accuracy" in r for r in steps["check"]["reasons"])
    # The labelled inputs became a DVC-tracked batch before anything trained on them.
    files = [Path(f) for f in steps["feedback"]["files"]]
    rows = steps["feedback"]["rows"]
    assert rows["train"] + rows["eval"] == 120
    assert rows["eval_recent"] == rows["eval"]  # one check: its window is all shifted traffic
    assert all(f.with_name(f.name + ".dvc").is_file() for f in files)
    prepared = json.loads(Path("data/prepared/text/profile.json").read_text())
    assert prepared["rows"]["feedback"] == steps["feedback"]["rows"]["train"]
    assert set(prepared["feedback"]["batches"]) == {files[0].name}
    scores = steps["evaluate"]["scores"]
    assert scores["candidate"]["feedback"] > scores["serving"]["feedback"]
    assert record["outcome"].startswith("promoted")
    # Promoted three ways: the release, MLflow's alias, the pointer; the server serves it.
    new = steps["promote"]["version"]
    assert steps["reload"]["serving"] == new == _serving(server) != before
    assert Pointer.read(Path("releases/serving.json")).text == str(
        Path(steps["promote"]["release"]).resolve()
    )
    client = MlflowClient(params.tracking.mlflow_uri)
    alias = client.get_model_version_by_alias("mltrail-text", "production")
    assert str(alias.version) == "2" and alias.tags["mltrail.version"] == new
    assert Path("monitoring/text/report.html").is_file()
    # The lineage goes on past training: where the model was promoted, and why.
    from mltrail.tracking.lineage import describe

    lineage = describe(Path(steps["promote"]["release"]))
    assert "promoted" in lineage and "MLflow mltrail-text v2" in lineage
    # Accuracy on the shifted traffic recovers with the new model.
    assert _traffic(server, shifted(30, 1000)) > 0.9


def test_a_worse_candidate_is_not_promoted(project: Path, server: Server) -> None:
    store = str(server.workdir / "telemetry.db")
    serving = _serving(server)
    pointer = Path("releases/serving.json").read_bytes()
    _traffic(server, shifted(20, 2000))
    _wait_stored(store, 120 + 60 + 40)
    # A regularisation so strong that the model learns nothing: worse everywhere.
    set_params(project, train_text={"C": 1e-6})
    record = retrain_once(_params(project), store, Path("monitoring"), force=True,
                          server=server.url, api_key=API_KEY)  # fmt: skip
    steps = {s["step"]: s for s in record["steps"]}
    assert steps["evaluate"]["promote"] is False
    assert record["outcome"].startswith("not promoted")
    assert steps["promote"]["status"] == "skipped"
    assert Path("releases/serving.json").read_bytes() == pointer
    assert _serving(server) == serving


def test_a_failed_retrain_leaves_the_serving_model_untouched(project: Path, server: Server) -> None:
    store = str(server.workdir / "telemetry.db")
    serving = _serving(server)
    pointer = Path("releases/serving.json").read_bytes()
    _traffic(server, shifted(10, 3000))
    _wait_stored(store, 120 + 60 + 40 + 20)
    set_params(project, text={"source": {"path": "gone.csv"}})  # prepare fails: no data
    with pytest.raises(MltrailError, match="dvc repro"):
        retrain_once(_params(project), store, Path("monitoring"), force=True)
    assert Path("releases/serving.json").read_bytes() == pointer
    assert _serving(server) == serving
    records: list[dict[str, Any]] = [
        json.loads(line) for line in Path("monitoring/text/loop.jsonl").read_text().splitlines()
    ]
    assert [r["outcome"].split()[0] for r in records] == ["promoted", "not", "failed:"]
    assert records[-1]["steps"][-1]["step"] == "error"


def test_labels_out_of_the_models_classes_never_become_training_data() -> None:
    from mltrail.release.retrain import within_classes
    from mltrail.telemetry import Labelled

    rows = [Labelled(f"p{i}", float(i), "v", 0, label, "text") for i, label in
            enumerate([0, 1, 5, -1, 2**40, 1])]  # fmt: skip
    kept, skipped = within_classes(rows, classes=2)
    assert [r.prediction_id for r in kept] == ["p0", "p1", "p5"] and skipped == 3
