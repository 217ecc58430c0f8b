"""The files of a prepared-data folder and of a model folder: written by one stage, read by
the next, so their names are defined here once.

Where the folders are (``data/prepared/text``, ``models/text/baseline``) is not: ``dvc.yaml``
names them and passes them to the stages as arguments.

A prepared-data folder (``prepare_data_text``, ``prepare_cifar10``) holds, for a task whose
split format is ``parquet`` (text) or ``npz`` (images):

- ``train.<format>`` and ``test.<format>``: the split (text: columns ``text``, ``label``,
  and ``group`` when params declare ``text.group_column``; images: arrays ``x``, ``y``);
- ``labels.json``: ``{"classes": [...]}``, class index -> name;
- ``profile.json``: what the data is (rows, class balance, content hash, source, params);
- ``reference.<format>``, only when prepare chose one: held-out feedback the models trained
  on this data are monitored against (without it, the test split is their reference).

Feedback batches (:mod:`mltrail.data.feedback`) use the same format: ``train-<stamp>.<format>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mltrail.errors import MltrailError
from mltrail.fsio import write_json

LABELS_FILE = "labels.json"
GROUP_COLUMN = "group"
"""The text split's optional column naming each row's group (fairness metrics): present only
when the data declares one, so folders prepared without it read as before. Feedback rows
added to the training split have no group (null)."""
PROFILE_FILE = "profile.json"

# A model folder (``mltrail train --out``): the model file is the task's (see tasks.py).
MANIFEST_FILE = "manifest.json"
"""The lineage manifest (mltrail.contracts.manifest)."""
METRICS_FILE = "metrics.json"
"""The metrics, as DVC reads them (``dvc metrics``)."""
REFERENCE_FILE = "reference.npz"
"""The monitoring reference (mltrail.models.reference), named and hashed by the manifest."""
ONNX_FILE = "model.onnx"
"""The CNN's ONNX copy, what the server runs without torch; named and hashed by the manifest."""


class Labels(BaseModel):
    """``labels.json``: the class names, in class-index order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: list[str]


@dataclass(frozen=True)
class PreparedLayout:
    """The files of one task's prepared-data folder (see the module's docstring); made by
    :func:`prepared_layout`, so that the split, the held-out reference and the feedback batches
    of a task cannot disagree on the format."""

    format: Literal["parquet", "npz"]
    train: str
    test: str
    reference: str
    """Held-out feedback chosen by prepare as the monitoring reference (optional)."""
    labels: str = LABELS_FILE
    profile: str = PROFILE_FILE
    group: str = GROUP_COLUMN
    """The split's optional group column (text only; absent when no group was declared)."""

    @property
    def suffix(self) -> str:
        return f".{self.format}"

    @property
    def required(self) -> tuple[str, ...]:
        """What training needs: the split and the class names."""
        return (self.train, self.test, self.labels)

    def missing(self, folder: Path) -> list[str]:
        return [name for name in self.required if not (folder / name).is_file()]

    def read_classes(self, folder: Path) -> list[str]:
        path = folder / self.labels
        try:
            return Labels.model_validate(json.loads(path.read_text())).classes
        except (OSError, json.JSONDecodeError, ValidationError) as exc:
            raise MltrailError(
                f"{path} is not a prepared-data labels file: {exc}",
                hint="prepare the data again (`dvc repro` or mltrail prepare)",
            ) from None

    def write_classes(self, folder: Path, classes: list[str]) -> None:
        write_json(folder / self.labels, Labels(classes=classes).model_dump(mode="json"))


def prepared_layout(format: Literal["parquet", "npz"]) -> PreparedLayout:
    return PreparedLayout(format, *(f"{name}.{format}" for name in ("train", "test", "reference")))


TEXT_LAYOUT = prepared_layout("parquet")
IMAGE_LAYOUT = prepared_layout("npz")
