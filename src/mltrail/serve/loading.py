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
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mltrail.errors import MltrailError
from mltrail.fsio import sha256_file
from mltrail.lineage import MANIFEST

MLFLOW_ARTIFACT = "mltrail-model"


class ModelLoadError(MltrailError):
    """The model cannot be served: missing, tampered with, or of an unknown kind."""


Profile = dict[str, float]


@dataclass(frozen=True)
class LoadedModel:
    kind: str  # text | image
    source: str
    manifest: dict[str, Any]
    classes: list[str]
    predict: Callable[[Any], tuple[NDArray[np.float64], list[Profile]]]
    """Inputs -> (class probabilities, one row per input; the input profiles)."""

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
    model_file = model_dir / manifest["model"]["file"]
    if kind == "text":
        return _load_text(source, manifest, classes, model_file)
    return _load_image(source, manifest, classes, model_file, str(info.get("architecture")))


def _load_text(
    source: str, manifest: dict[str, Any], classes: list[str], model_file: Path
) -> LoadedModel:
    from mltrail.models.text import TextScorer, load_text_model

    scorer = TextScorer(load_text_model(model_file))

    def predict(texts: Sequence[str]) -> tuple[NDArray[np.float64], list[Profile]]:
        probs, counts = scorer.score(list(texts))
        profiles = [
            {"chars": float(len(t)), "tokens": float(n),
             "oov_rate": (n - known) / n if n else 1.0}
            for t, (n, known) in zip(texts, counts, strict=True)
        ]  # fmt: skip
        return probs, profiles

    return LoadedModel("text", source, manifest, classes, predict)


def _load_image(
    source: str, manifest: dict[str, Any], classes: list[str], model_file: Path, arch: str
) -> LoadedModel:
    import torch

    from mltrail.models.cnn_io import load_cnn

    model = load_cnn(model_file, arch)
    lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def predict(images: NDArray[np.float32]) -> tuple[NDArray[np.float64], list[Profile]]:
        with lock, torch.inference_mode():
            logits = model(torch.from_numpy(np.ascontiguousarray(images)))
            probs = torch.softmax(logits, dim=1).double().numpy()
        return probs, profile(images)

    def profile(images: NDArray[np.float32]) -> list[Profile]:
        found = []
        for image in images:
            gray = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
            found.append({
                "mean_r": float(image[0].mean()), "mean_g": float(image[1].mean()),
                "mean_b": float(image[2].mean()), "std_r": float(image[0].std()),
                "std_g": float(image[1].std()), "std_b": float(image[2].std()),
                "brightness": float(gray.mean()), "contrast": float(gray.std()),
            })  # fmt: skip
        return found

    return LoadedModel("image", source, manifest, classes, predict)
