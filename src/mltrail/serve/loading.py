"""Loading a model to serve: verified against its manifest, never unpickled.

A model is a folder written by ``mltrail train`` (``manifest.json`` + the model file), or the
same folder logged to MLflow as the ``mltrail-model`` artifact of a run (``runs:/<id>/...`` or a
registered ``models:/<name>@<alias>`` / ``models:/<name>/<version>``). Before anything is
loaded, the model file's sha256 must equal the manifest's; a missing or changed file is
refused. The text model is read from arrays (``allow_pickle=False``), the CNN with
``torch.load(weights_only=True)``: loading runs no code from the file.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mltrail.errors import MltrailError
from mltrail.fsio import sha256_file
from mltrail.lineage import MANIFEST
from mltrail.monitor.features import ImageProjection, Predict, image_predictor, text_predictor
from mltrail.monitor.reference import Reference

MLFLOW_ARTIFACT = "mltrail-model"


class ModelLoadError(MltrailError):
    """The model cannot be served: missing, tampered with, or of an unknown kind."""


@dataclass(frozen=True)
class LoadedModel:
    kind: str  # text | image
    source: str
    manifest: dict[str, Any]
    classes: list[str]
    predict: Predict
    """Inputs -> (class probabilities, one row per input; the input profiles)."""
    explain: Callable[[str, int], list[dict[str, float | str]]] | None = None
    """Text models: (text, class) -> the terms that pushed the prediction towards it."""

    def predict_proba(self, inputs: Any) -> NDArray[np.float64]:
        return self.predict(inputs)[0]

    @property
    def version(self) -> str:
        """``<stage>@<first 12 hex of the model file's sha256>``: what telemetry records."""
        return f"{self.manifest.get('stage', self.kind)}@{self.manifest['model']['sha256'][:12]}"


def verify(model_dir: Path) -> dict[str, Any]:
    """The folder's manifest, once its model file is there and matches its sha256."""
    try:
        manifest: dict[str, Any] = json.loads((model_dir / MANIFEST).read_text())
        expected = manifest["model"]["sha256"]
        model_file = model_dir / manifest["model"]["file"]
    except FileNotFoundError:
        raise ModelLoadError(
            f"{model_dir} has no {MANIFEST}",
            hint="point at a folder written by `mltrail train` (models/<task>/<tracker>)",
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{model_dir / MANIFEST} is not an mltrail manifest: {exc}") from None
    if not model_file.is_file():
        raise ModelLoadError(
            f"{model_file} is missing", hint="restore it (`dvc pull`) or retrain (`dvc repro`)"
        )
    actual = sha256_file(model_file)
    if actual != expected:
        raise ModelLoadError(
            f"{model_file} has sha256 {actual[:16]}..., its manifest says {expected[:16]}...: "
            "the file was changed after training; refusing to load it",
            hint="restore the model (`dvc checkout`) or retrain it",
        )
    return manifest


def resolve(source: str) -> Path:
    """A local folder for ``source``: a path, or an MLflow URI downloaded to a temp folder."""
    if not source.startswith(("runs:/", "models:/")):
        return Path(source)
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        if source.startswith("models:/"):
            name, _, ref = source.removeprefix("models:/").partition("@")
            client = MlflowClient()
            if ref:
                version = client.get_model_version_by_alias(name, ref)
            else:
                name, _, number = name.partition("/")
                version = client.get_model_version(name, number)
            source = f"runs:/{version.run_id}/{MLFLOW_ARTIFACT}"
        target = tempfile.mkdtemp(prefix="mltrail-model-")
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=target))
    except MlflowException as exc:
        raise ModelLoadError(f"cannot fetch {source} from MLflow: {exc.message}") from None


def load(source: str, kind: str) -> LoadedModel:
    model_dir = resolve(source)
    manifest = verify(model_dir)
    task = manifest.get("task")
    if (kind, task) not in (("text", "text"), ("image", "cifar10")):
        raise ModelLoadError(f"{source} is a {task} model, not an {kind} model")
    info = manifest["model"].get("info", {})
    classes = [str(c) for c in info.get("classes", [])]
    if not classes:
        raise ModelLoadError(f"{source}: its manifest names no classes", hint="retrain it")
    if kind == "text":
        return _load_text(source, manifest, classes, model_dir)
    return _load_image(source, manifest, classes, model_dir, str(info.get("architecture")))


def _load_reference(model_dir: Path, manifest: dict[str, Any]) -> Reference | None:
    """The model's monitoring reference (for the projections its profiles carry), verified
    like the model file; ``None`` for a model trained before references existed."""
    from mltrail.monitor.reference import load_reference

    entry = manifest["model"].get("info", {}).get("reference")
    if not entry:
        return None
    path = model_dir / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise ModelLoadError(
            f"{path} is missing or differs from its manifest's sha256; refusing to load",
            hint="restore the model folder (`dvc checkout`) or retrain it",
        )
    return load_reference(path)


def _load_text(
    source: str, manifest: dict[str, Any], classes: list[str], model_dir: Path
) -> LoadedModel:
    from mltrail.models.text import TextScorer, load_text_model

    reference = _load_reference(model_dir, manifest)
    scorer = TextScorer(
        load_text_model(model_dir / manifest["model"]["file"]),
        None if reference is None else reference.projection,
    )
    return LoadedModel("text", source, manifest, classes, text_predictor(scorer), scorer.explain)


def _load_image(
    source: str, manifest: dict[str, Any], classes: list[str], model_dir: Path, arch: str
) -> LoadedModel:
    from mltrail.models.cnn_io import load_cnn

    reference = _load_reference(model_dir, manifest)
    projection = (
        None if reference is None
        else ImageProjection(reference.projection_mean, reference.projection)
    )  # fmt: skip
    model = load_cnn(model_dir / manifest["model"]["file"], arch)
    return LoadedModel("image", source, manifest, classes, image_predictor(model, projection))
