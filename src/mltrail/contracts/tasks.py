"""The task registry: every place that goes from a task to what serves it looks it up here.

A **task** is what a pipeline trains (``text``, ``cifar10``: the names of params.yaml's data
sections, the stages and the model folders). A **kind** is what a server serves (``text``,
``image``: the ``--text-model`` / ``--image-model`` options, the pointer file's keys, the
``/predict/<kind>`` routes, the Prometheus ``kind`` label). One task per kind: the CIFAR-10
CNN is the server's image model.

    spec = task_spec("cifar10")
    spec.kind, spec.endpoint, spec.model_file   # "image", "/predict/image", "model.pt"
    kind_spec("image").task                      # "cifar10"

The server's loader is chosen by kind (``mltrail.models.loading``; a test checks that every
kind registered here has one), and the monitor reads a task's telemetry by its endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from mltrail.config import Task
from mltrail.contracts.layout import IMAGE_LAYOUT, TEXT_LAYOUT, PreparedLayout
from mltrail.contracts.secrets import redact_spec
from mltrail.errors import MltrailError

Kind = Literal["text", "image"]
Flavor = Literal["sklearn", "pytorch"]
"""How trackers log the model (MLflow's flavor of the same name)."""


@dataclass(frozen=True)
class TaskSpec:
    task: Task
    kind: Kind
    endpoint: str
    """The server's prediction route for this kind; telemetry records it per prediction."""
    model_file: str
    """The model file in a model folder (hashed by the manifest, loaded by the server)."""
    flavor: Flavor
    prepared: PreparedLayout
    """The files of the prepared-data folder the task trains on."""
    prepare_stage: str
    """The DVC stage that writes the prepared data (named in errors: run it first)."""


TASKS: Mapping[Task, TaskSpec] = MappingProxyType(
    {
        "text": TaskSpec(
            "text",
            "text",
            "/predict/text",
            "model.npz",
            "sklearn",
            TEXT_LAYOUT,
            "prepare_data_text",
        ),
        "cifar10": TaskSpec(
            "cifar10",
            "image",
            "/predict/image",
            "model.pt",
            "pytorch",
            IMAGE_LAYOUT,
            "prepare_cifar10",
        ),
    }
)
KINDS: tuple[Kind, ...] = tuple(spec.kind for spec in TASKS.values())
PREDICT_ENDPOINTS: tuple[str, ...] = tuple(spec.endpoint for spec in TASKS.values())
"""The server's prediction routes, one per kind."""


def task_spec(task: str) -> TaskSpec:
    """The registry's entry for ``task``; an error that lists the tasks otherwise."""
    for spec in TASKS.values():
        if spec.task == task:
            return spec
    raise MltrailError(f"unknown task {task!r}", hint=f"one of {', '.join(TASKS)}")


def kind_spec(kind: str) -> TaskSpec:
    """The task a server serves as ``kind``; an error that lists the kinds otherwise."""
    for spec in TASKS.values():
        if spec.kind == kind:
            return spec
    raise MltrailError(f"unknown model kind {kind!r}", hint=f"one of {', '.join(KINDS)}")


BASELINE = "baseline"
"""The paper's name for training without a tracker (tracker ``none``)."""
_NOT_NAME = re.compile(r"[^A-Za-z0-9]+")


def tracker_name(tracker: str) -> str:
    """What a tracker spec is called in stage and model-folder names: ``none`` -> ``baseline``
    (dvc.yaml's ``train_text_baseline``, ``models/text/baseline``), ``mlflow,wandb`` ->
    ``mlflow_wandb``, a URI -> its letters and digits (``http://h:5000`` -> ``http-h-5000``),
    its credentials left out (``postgresql://u:PW@h/db`` -> ``postgresql-u-h-db``)."""
    shown = redact_spec(tracker)
    parts = [part.strip() for part in shown.split(",") if part.strip()] or ["none"]
    return "_".join(
        BASELINE if part == "none" else _NOT_NAME.sub("-", part).strip("-") for part in parts
    )


def train_stage(task: str, tracker: str) -> str:
    """The name of the DVC stage that trains ``task`` under ``tracker``:
    ``train_<task>_<tracker_name>``, as dvc.yaml and ``mltrail init`` name them.

    The manifest records the stage that trained a model, and the model's version is
    ``<stage>@<sha12>``, so the name must be one ``dvc repro`` knows. DVC passes no stage
    name to the command it runs (there is no ``$DVC_STAGE``), so dvc.yaml passes it
    explicitly (``mltrail train --stage``); this is the default when it is not given (a
    ``mltrail train`` typed by hand, the benchmark's cells), and it is what dvc.yaml's own
    names follow, so a hand-run training of a pipeline's model gets the same name."""
    return f"train_{task}_{tracker_name(tracker)}"
