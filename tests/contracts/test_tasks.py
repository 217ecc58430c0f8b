"""The task registry is the one mapping task -> kind -> endpoint -> model file and layout:
every task params.yaml knows is registered, every place that maps them uses it, and dvc.yaml
names each training stage as the manifest records it."""

from __future__ import annotations

import ast
import base64
import re
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from mltrail.config import Task
from mltrail.contracts.tasks import (
    KINDS,
    PREDICT_ENDPOINTS,
    TASKS,
    Kind,
    kind_spec,
    task_spec,
    tracker_name,
    train_stage,
)
from mltrail.errors import MltrailError
from tests.conftest import REPO

CONTRACTS = REPO / "src" / "mltrail" / "contracts"


def test_every_task_of_the_params_is_registered_with_its_kind() -> None:
    assert tuple(TASKS) == get_args(Task)
    assert set(KINDS) == set(get_args(Kind)) and len(KINDS) == len(TASKS)  # one task per kind
    for task, spec in TASKS.items():
        assert spec.task == task and task_spec(task) is spec and kind_spec(spec.kind) is spec
        assert spec.endpoint == f"/predict/{spec.kind}"
    assert PREDICT_ENDPOINTS == ("/predict/text", "/predict/image")


@pytest.mark.parametrize("lookup", [task_spec, kind_spec])
def test_an_unknown_name_lists_the_choices(lookup: object) -> None:
    with pytest.raises(MltrailError, match="unknown") as caught:
        lookup("audio")  # type: ignore[operator]
    assert caught.value.hint is not None and "one of" in caught.value.hint


def test_the_server_has_a_loader_and_a_route_for_every_kind() -> None:
    from mltrail.models.loading import _LOADERS
    from mltrail.serve.app import create_app
    from mltrail.serve.middleware import METRIC_PATHS
    from mltrail.serve.settings import load_settings

    assert set(_LOADERS) == set(KINDS)
    # The OpenAPI paths: app.routes holds included routers, not their routes (FastAPI >= 0.137).
    routes = set(create_app(load_settings()).openapi()["paths"])
    assert set(PREDICT_ENDPOINTS) <= routes and set(PREDICT_ENDPOINTS) <= METRIC_PATHS


def test_feedback_batches_use_the_prepared_format(tmp_path: Path) -> None:
    from mltrail.data import feedback

    captured = {"text": "a review", "image": base64.b64encode(bytes(3 * 32 * 32)).decode()}
    for task, spec in TASKS.items():
        batch = feedback.write_batch(
            tmp_path / task, task, "s", ["p"], [captured[spec.kind]], [0], 0.5
        )
        assert batch.train.suffix == batch.eval.suffix == spec.prepared.suffix
        assert feedback.batch_files(tmp_path / task, task) == [batch.train]


@pytest.mark.parametrize(
    ("tracker", "name"),
    [("none", "baseline"), ("", "baseline"), ("mlflow", "mlflow"), ("wandb", "wandb"),
     ("mlflow,wandb", "mlflow_wandb"), ("http://host:5000", "http-host-5000")],
)  # fmt: skip
def test_stage_names(tracker: str, name: str) -> None:
    assert tracker_name(tracker) == name
    assert train_stage("text", tracker) == f"train_text_{name}"


def _train_stages(pipeline: str) -> dict[str, str]:
    stages = yaml.safe_load(pipeline)["stages"]
    return {
        name: s["cmd"] for name, s in stages.items() if str(s["cmd"]).startswith("mltrail train")
    }


def test_dvc_yaml_passes_each_training_stage_its_own_name() -> None:
    """The manifest records ``--stage``, and the served version is ``<stage>@<sha12>``: it
    must be a stage ``dvc repro`` knows, and the default name must agree with it."""
    stages = _train_stages((REPO / "dvc.yaml").read_text())
    assert len(stages) == 6
    for name, cmd in stages.items():
        task, tracker = re.search(r"mltrail train (\S+) .*--tracker (\S+)", cmd).groups()  # type: ignore[union-attr]
        assert f"--stage {name} " in cmd
        assert train_stage(task, tracker) == name


def test_the_init_template_passes_the_stage_name() -> None:
    from mltrail.project import CsvSummary, render

    files = render("p", data_file="data/raw/r.csv", sha256="0" * 64, text_column="t",
                   label_column="l", tracker="none", summary=CsvSummary(9, ["a", "b"]))  # fmt: skip
    (cmd,) = _train_stages(files["dvc.yaml"]).values()
    assert "--stage train_text_baseline --tracker none" in cmd


def test_the_contracts_import_only_the_layer_below() -> None:
    """errors, fsio, config, pydantic and the standard library: every layer above can use
    them without importing another."""
    below = {"mltrail.errors", "mltrail.fsio", "mltrail.config"}

    def allowed(name: str) -> bool:
        top = name.split(".")[0]
        if top == "mltrail":
            return name in below or name.startswith("mltrail.contracts.")
        return top in sys.stdlib_module_names or top in ("pydantic", "__future__")

    for path in CONTRACTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert all(allowed(n) for n in names), f"{path.name} imports {names}"
