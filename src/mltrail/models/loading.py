"""Loading a model to serve, monitor or promote: verified against its manifest, never unpickled.

A model is a folder written by ``mltrail train`` (``manifest.json`` + the model file), or the
same folder logged to MLflow as the ``mltrail-model`` artifact of a run (``runs:/<id>/...`` or a
registered ``models:/<name>@<alias>`` / ``models:/<name>/<version>``). Before anything is
loaded, the model file's sha256 must equal the manifest's; a missing or changed file is
refused. The text model is read from arrays (``allow_pickle=False``), the CNN with
``torch.load(weights_only=True)``, or, where its manifest names an ONNX copy (``model.onnx``,
verified the same way), run by ONNX Runtime without importing torch at all: loading runs no
code from the file. ``$MLTRAIL_CNN_RUNTIME`` chooses: ``auto`` (the default: ONNX Runtime when
the model has an ONNX copy and onnxruntime is installed, else torch), ``onnx`` or ``torch``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mltrail.contracts.manifest import HashedFile, Manifest, ManifestError, OnnxCopy
from mltrail.contracts.tasks import Kind, kind_spec
from mltrail.errors import MltrailError
from mltrail.models.features import (
    ImageProjection,
    Predict,
    image_predictor,
    onnx_image_predictor,
    text_predictor,
)
from mltrail.models.reference import Reference
from mltrail.settings import Environment, env_name

MLFLOW_ARTIFACT = "mltrail-model"
TEMP_PREFIX = "mltrail-model-"
CNN_RUNTIME_ENV = env_name(Environment, "cnn_runtime")
CNN_RUNTIMES = ("auto", "onnx", "torch")


Loader = Callable[[str, Manifest, list[str], Path], "LoadedModel"]
"""(source, manifest, classes, model folder) -> the loaded model."""


class ModelLoadError(MltrailError):
    """The model cannot be served: missing, tampered with, or of an unknown kind."""


class RegistryError(ModelLoadError):
    """MLflow could not be asked (down, unreachable, or it refused): the model itself may be
    fine, so a caller that retries asks again rather than giving the model up."""


@dataclass(frozen=True)
class Fetched:
    """A local folder for a source, and what it came from."""

    model_dir: Path
    temp: Path | None
    """The temp folder holding a download (None: ``model_dir`` is the caller's own folder)."""
    registry_version: str | None = None
    """The registry version a ``models:/`` source resolved to (None for a folder or
    ``runs:/``)."""


@dataclass(frozen=True)
class LoadedModel:
    kind: Kind
    source: str
    manifest: Manifest
    classes: list[str]
    predict: Predict
    """Inputs -> (class probabilities, one row per input; the input profiles)."""
    explain: Callable[[str, int], list[dict[str, float | str]]] | None = None
    """Text models: (text, class) -> the terms that pushed the prediction towards it."""
    runtime: str = "numpy"
    """What runs the model: ``numpy`` (text), ``torch`` or ``onnx`` (the CNN)."""
    registry_version: str | None = None
    """For a ``models:/`` source: the MLflow registry version that was loaded (the alias
    resolved once, before the download), what a server following the alias compares."""

    def predict_proba(self, inputs: Any) -> NDArray[np.float64]:
        return self.predict(inputs)[0]

    @property
    def version(self) -> str:
        """``<stage>@<first 12 hex of the model file's sha256>``: what telemetry records."""
        return self.manifest.model_version


def verify(model_dir: Path) -> Manifest:
    """The folder's manifest, once every file it hashes (the model file, its ONNX copy, its
    monitoring reference) is there and matches its sha256: the server runs the ONNX copy and
    the monitor reads the reference, so a changed one is as much a tampered model."""
    try:
        manifest = Manifest.read(model_dir)
    except ManifestError as exc:
        raise ModelLoadError(exc.message, hint=exc.hint) from None
    for role, entry in manifest.model.hashed_files().items():
        path = model_dir / entry.file
        status, actual = entry.check(model_dir)
        if status == "missing":
            raise ModelLoadError(
                f"{path} is missing or differs from its manifest's sha256: the {role} file "
                "is not there; refusing to load the model",
                hint="restore it (`dvc pull`) or retrain (`dvc repro`)",
            )
        if status == "differs":
            raise ModelLoadError(
                f"{path} is missing or differs from its manifest's sha256: the {role} file has "
                f"{str(actual)[:16]}..., the manifest says {entry.sha256[:16]}...: the file was "
                "changed after training; refusing to load it",
                hint="restore the model (`dvc checkout`) or retrain it",
            )
    return manifest


def resolve(source: str) -> Path:
    """A local folder for ``source``: a path, or an MLflow URI downloaded to a temp folder
    (left for the caller; :func:`local_copy` removes it itself)."""
    return _fetch(source).model_dir


@contextlib.contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """A local folder for ``source`` while the block runs; an MLflow download is removed after
    it, loaded or not (a loaded model lives in memory: nothing reads its files again)."""
    with _fetched(source) as fetched:
        yield fetched.model_dir


@contextlib.contextmanager
def _fetched(source: str) -> Iterator[Fetched]:
    fetched = _fetch(source)
    try:
        yield fetched
    finally:
        if fetched.temp is not None:
            shutil.rmtree(fetched.temp, ignore_errors=True)


def _fetch(source: str) -> Fetched:
    """``source``'s folder: the path itself, or a download into a new temp folder."""
    _check_source(source)
    if not source.startswith(("runs:/", "models:/")):
        return Fetched(Path(source), None)
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        model_dir, version = _download(source, temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return Fetched(model_dir, temp, version)


def _check_source(source: str) -> None:
    if "\x00" in source:
        raise ModelLoadError(
            f"{source!r} holds a NUL byte: not a model folder or an MLflow URI",
            hint="a model folder written by `mltrail train`, runs:/<id>/mltrail-model or "
            "models:/<name>@<alias>",
        )


def split_registry_uri(source: str) -> tuple[str, str, str] | None:
    """``models:/NAME@ALIAS`` -> (NAME, "@", ALIAS); ``models:/NAME/VERSION`` -> (NAME, "/",
    VERSION); None for anything else."""
    if not source.startswith("models:/"):
        return None
    rest = source.removeprefix("models:/")
    name, at, alias = rest.partition("@")
    if at:
        return (name, "@", alias) if name and alias and "/" not in alias else None
    name, _, number = rest.rpartition("/")
    return (name, "/", number) if name and number else None


def registry_version(name: str, alias: str) -> str:
    """The version ``models:/NAME@ALIAS`` names now: one small registry call, no download.
    :class:`RegistryError` when MLflow cannot answer (or has no such alias)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        raise RegistryError(f"cannot resolve models:/{name}@{alias}: {exc.message}") from None
    except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
        raise RegistryError(f"cannot reach MLflow for models:/{name}@{alias}: {exc}") from None


def _download(source: str, target: Path) -> tuple[Path, str | None]:
    """The model folder of ``source`` (``runs:/`` or ``models:/``) downloaded into ``target``,
    and the registry version it is (None for ``runs:/``). An alias is resolved once, to a
    version and its run, and that run's files are downloaded: the version returned is the one
    whose files these are, even if the alias moves during the download."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # MLflow draws a progress bar per download: in a server's log, a flood of lines at every
    # swap of a followed alias. A value the operator set wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    number = None
    try:
        parts = split_registry_uri(source)
        if source.startswith("models:/"):
            if parts is None:
                raise ModelLoadError(
                    f"{source} is not a registry URI mltrail can load",
                    hint="models:/<name>@<alias> or models:/<name>/<version>",
                )
            name, sep, ref = parts
            client = MlflowClient()
            if sep == "@":
                version = client.get_model_version_by_alias(name, ref)
            else:
                version = client.get_model_version(name, ref)
            number = str(version.version)
            source = f"runs:/{version.run_id}/{MLFLOW_ARTIFACT}"
        folder = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target))
        return Path(folder), number
    except MlflowException as exc:
        raise RegistryError(f"cannot fetch {source} from MLflow: {exc.message}") from None
    except OSError as exc:  # the server went away in the middle (requests' errors are OSErrors)
        raise RegistryError(f"cannot fetch {source} from MLflow: {exc}") from None


def load(source: str, kind: str) -> LoadedModel:
    """The model at ``source``, verified and in memory; a :class:`MltrailError` (never another
    exception) when it cannot be served."""
    loader = _LOADERS.get(kind)
    if loader is None:
        raise ModelLoadError(f"no loader for {kind!r} models", hint=f"one of {', '.join(_LOADERS)}")
    try:
        with _fetched(source) as fetched:
            model = _load(source, kind, fetched.model_dir, loader)
            return dataclasses.replace(model, registry_version=fetched.registry_version)
    except MltrailError:
        raise
    except Exception as exc:
        # A model folder comes from outside: whatever a reader trips over in it (a path that
        # is a file, a truncated zip, a pickle where weights belong) is a model that cannot
        # be served, not a crash of the server that asked.
        raise ModelLoadError(
            f"{source} cannot be loaded ({type(exc).__name__}: {exc})",
            hint="point at a model folder written by `mltrail train` (models/<task>/<tracker>), "
            "runs:/<id>/mltrail-model or models:/<name>@<alias>",
        ) from None


def _load(source: str, kind: str, model_dir: Path, loader: Loader) -> LoadedModel:
    manifest = verify(model_dir)
    task = manifest.task
    if kind_spec(kind).task != task:
        raise ModelLoadError(f"{source} is a {task} model, not an {kind} model")
    classes = manifest.model.info.classes
    if not classes:
        raise ModelLoadError(f"{source}: its manifest names no classes", hint="retrain it")
    return loader(source, manifest, classes, model_dir)


def load_verified_reference(model_dir: Path, manifest: Manifest) -> Reference | None:
    """The model's monitoring reference (for the projections its profiles carry), verified
    like the model file; ``None`` for a model trained before references existed."""
    from mltrail.models.reference import load_reference

    entry = manifest.model.info.reference
    if entry is None:
        return None
    _require_match(model_dir, entry)
    return load_reference(model_dir / entry.file)


def _require_match(model_dir: Path, entry: HashedFile) -> None:
    status, _ = entry.check(model_dir)
    if status != "matches":
        raise _mismatch(model_dir / entry.file)


def _mismatch(path: Path) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is missing or differs from its manifest's sha256; refusing to load",
        hint="restore the model folder (`dvc checkout`) or retrain it",
    )


def _load_text(source: str, manifest: Manifest, classes: list[str], model_dir: Path) -> LoadedModel:
    from mltrail.models.text import TextScorer, load_text_model

    reference = load_verified_reference(model_dir, manifest)
    scorer = TextScorer(
        load_text_model(model_dir / manifest.model.file),
        None if reference is None else reference.projection,
    )
    return LoadedModel("text", source, manifest, classes, text_predictor(scorer), scorer.explain)


def _load_image(
    source: str, manifest: Manifest, classes: list[str], model_dir: Path
) -> LoadedModel:
    reference = load_verified_reference(model_dir, manifest)
    projection = (
        None
        if reference is None
        else ImageProjection(reference.projection_mean, reference.projection)
    )
    onnx_entry = manifest.model.info.onnx
    if _cnn_runtime(source, onnx_entry) == "onnx":
        assert onnx_entry is not None
        session = _onnx_session(model_dir, onnx_entry)
        predict = onnx_image_predictor(session, projection)
        return LoadedModel("image", source, manifest, classes, predict, runtime="onnx")
    try:
        from mltrail.models.cnn_io import load_cnn
    except ImportError as exc:
        raise ModelLoadError(
            f"{source}: the CNN would run under torch, which cannot be imported ({exc})"
            + ("" if onnx_entry else "; the model has no ONNX copy for ONNX Runtime"),
            hint="retrain the model (`dvc repro`: training writes model.onnx) and serve it "
            f"with onnxruntime (mltrail[serve]) and ${CNN_RUNTIME_ENV} unset, or install torch "
            "(mltrail[torch])",
        ) from None
    model = load_cnn(model_dir / manifest.model.file, str(manifest.model.info.architecture))
    predict = image_predictor(model, projection)
    return LoadedModel("image", source, manifest, classes, predict, runtime="torch")


_LOADERS: dict[str, Loader] = {
    "text": _load_text,
    "image": _load_image,
}
"""A loader per server kind (mltrail.contracts.tasks.KINDS)."""


def _cnn_runtime(source: str, onnx_entry: OnnxCopy | None) -> str:
    """``onnx`` or ``torch``, from ``$MLTRAIL_CNN_RUNTIME`` and what the model and the
    environment have."""
    wanted = Environment.read().cnn_runtime.strip().lower() or "auto"
    if wanted not in CNN_RUNTIMES:
        raise ModelLoadError(
            f"${CNN_RUNTIME_ENV}={wanted!r}: expected one of {', '.join(CNN_RUNTIMES)}"
        )
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    if wanted == "onnx" and not onnx_entry:
        raise ModelLoadError(
            f"{source} has no ONNX copy (its manifest names none), and ${CNN_RUNTIME_ENV}=onnx",
            hint="retrain it (`dvc repro`): training writes model.onnx",
        )
    if wanted == "onnx" and not has_ort:
        raise ModelLoadError(
            f"${CNN_RUNTIME_ENV}=onnx, but onnxruntime is not installed",
            hint="pip install mltrail[serve] (it brings onnxruntime)",
        )
    if wanted == "torch" or not (onnx_entry and has_ort):
        return "torch"
    return "onnx"


def _onnx_session(model_dir: Path, entry: OnnxCopy) -> Any:
    """An ONNX Runtime session (CPU) on the model's ONNX copy, once its bytes match the
    manifest's sha256: the bytes checked are the bytes loaded."""
    import onnxruntime as ort

    path = model_dir / entry.file
    try:
        data = path.read_bytes()
    except OSError:
        data = None
    if data is None or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise _mismatch(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"{path} is not a model ONNX Runtime can run: {exc}") from None
    outputs = {o.name for o in session.get_outputs()}
    if not {"features", "logits"} <= outputs:
        raise ModelLoadError(f"{path} lacks the outputs features and logits (has {outputs})")
    return session
