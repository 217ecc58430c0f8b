"""MLflow backend: MLflow's own client and store (SQLite file by default, or a server).

Imported only when an MLflow tracker is chosen: ``import mlflow`` alone costs about 1.6 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mltrail.contracts.layout import MANIFEST_FILE
from mltrail.contracts.manifest import ModelInfo
from mltrail.tracking.base import ModelRef, RunStart, Status

RUN_ID_TAG = "mltrail.run_id"
_BATCH = 100  # MLflow accepts at most 100 params / 1000 metrics per log_batch call
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class MlflowTracker:
    name: ClassVar[str] = "mlflow"

    def __init__(self, tracking_uri: str, recorded_uri: str | None = None) -> None:
        """``tracking_uri``: where to connect (may hold credentials); ``recorded_uri``: what
        the export state records (redacted; see mltrail.tracking.registry)."""
        self.tracking_uri = tracking_uri
        self.recorded_uri = recorded_uri or tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id = ""
        self.experiment_id = ""

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except MlflowException:  # created meanwhile by a concurrent run
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def start(self, run: RunStart) -> None:
        self.experiment_id = self._experiment(run.experiment)
        # An earlier, interrupted export of the same run left a partial run: replace it.
        stale = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}'"
        )
        for old in stale:
            self.client.delete_run(old.info.run_id)
        created = self.client.create_run(
            self.experiment_id,
            start_time=_ms(run.start_time),
            tags={**run.tags, RUN_ID_TAG: run.run_id},
            run_name=run.run_name,
        )
        self.run_id = created.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None, timestamp: float) -> None:
        items = [Metric(k, float(v), _ms(timestamp), step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + _BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        else:
            self.client.log_artifact(self.run_id, str(path))

    def log_model(self, model: ModelRef) -> None:
        """Log ``model`` so the MLflow UI shows it and ``mlflow.pyfunc.load_model`` serves it,
        and mltrail's own files (model file, manifest, monitoring reference, ONNX copy) as
        ``mltrail-model``, which ``mltrail serve`` loads from ``runs:/`` or ``models:/`` URIs
        without unpickling."""
        info = ModelInfo.model_validate(
            {k: v for k, v in model.info.items() if k != "pip_requirements"}
        )
        extra = [entry.file for entry in info.extra_files().values()]
        for name in (model.file, MANIFEST_FILE, *extra):
            if (model.path / name).is_file():
                self.client.log_artifact(
                    self.run_id, str(model.path / name), artifact_path="mltrail-model"
                )
        mlflow.set_tracking_uri(self.tracking_uri)
        requirements = list(model.info.get("pip_requirements", []))
        with mlflow.start_run(run_id=self.run_id):
            if model.flavor == "sklearn":
                from mltrail.models.text import load_text_model

                # MLflow's own sklearn flavor, so its UI, registry and `mlflow models serve`
                # work as usual. Its copy is a pickle: skops, MLflow's safe option, takes
                # longer than the training (see mltrail.models.text). mltrail itself loads
                # and serves only the array format of the model folder.
                mlflow.sklearn.log_model(
                    load_text_model(model.path / model.file),
                    name="model",
                    serialization_format="cloudpickle",
                    pip_requirements=requirements,  # skips MLflow's slow requirement inference
                )
            else:
                from mlflow import pytorch as mlflow_pytorch

                from mltrail.models.cnn_io import load_cnn

                mlflow_pytorch.log_model(
                    load_cnn(model.path / model.file, str(info.architecture)),
                    name="model",
                    pip_requirements=requirements,
                    # MLflow's default "pt2" (torch.export) fixes the batch size to the
                    # example's, so the model could only ever predict one image at a time.
                    serialization_format="pickle",
                    input_example=np.zeros((2, 3, 32, 32), dtype=np.float32),  # the signature
                )

    def finish(self, status: Status, end_time: float) -> dict[str, str]:
        self.client.set_terminated(self.run_id, status=_STATUS[status], end_time=_ms(end_time))
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "uri": f"runs:/{self.run_id}",
            "tracking_uri": self.recorded_uri,
        }

    def abort(self) -> None:
        pass  # the partial run is replaced on the next attempt (see start)
