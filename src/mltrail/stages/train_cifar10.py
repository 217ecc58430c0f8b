"""Stages ``train_cifar10_{baseline,mlflow,wandb}``: a CNN in PyTorch on prepared CIFAR-10.

:func:`train_cifar10` is the core (arrays in, the trained network, its scores, its reference
and its saliency maps out; no files), :func:`write_trained_cnn` writes a model folder's files,
:func:`run` reads the prepared data and runs both under the tracked run
(:func:`mltrail.stages.train.run_training`), logging each epoch's scores to it.

Outputs: ``model.pt`` (a state dict: loads with ``weights_only=True``), ``model.onnx`` (the
same network for ONNX Runtime, with the penultimate features as a second output: what the
server runs without torch), ``metrics.json``
(accuracy, test loss, train and predict time: the paper's Tables 5-6), ``history.csv`` and
``curves.png`` (per epoch), ``per_class.json``, ``confusion_matrix.png``, ``saliency.png``
(gradient saliency on one held-out image per class), ``reference.npz`` (what monitoring
compares traffic with), ``manifest.json``.
"""

from __future__ import annotations

import csv
import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from mltrail.config import Params, TrainCifar10Params
from mltrail.contracts.layout import ONNX_FILE, REFERENCE_FILE
from mltrail.contracts.manifest import Manifest, ModelInfo, OnnxCopy, ReferenceEntry
from mltrail.contracts.tasks import task_spec
from mltrail.fsio import sha256_file, write_json
from mltrail.models.cnn import Recipe, resolve_recipe
from mltrail.models.explain import fixed_sample, plot_saliency, saliency
from mltrail.models.metrics import (
    classification_scores,
    per_class_report,
    plot_confusion,
    plot_curves,
)
from mltrail.models.reference import Reference, build_image_reference
from mltrail.stages.train import Fitted, require_prepared, run_training
from mltrail.tracking.run import Reservation, TrackedRun

if TYPE_CHECKING:
    from torch import nn

    from mltrail.models.cnn_train import CnnResult, EpochRecord

TASK = task_spec("cifar10")
Images = NDArray[np.float32]
"""N x 3 x 32 x 32 in [0, 1], as prepare writes them."""
Labels = NDArray[np.int64]


@dataclass(frozen=True)
class Saliency:
    """Gradient saliency on one held-out image per class (the same images for every run)."""

    images: Images
    maps: NDArray[np.float32]
    labels: list[int]
    predicted: list[int]


@dataclass(frozen=True)
class TrainedCnn:
    """A trained CNN and everything its folder is made of, in memory."""

    model: nn.Module
    """On the CPU, in eval mode."""
    result: CnnResult
    recipe_name: str
    recipe: Recipe
    classes: list[str]
    metrics: dict[str, float]
    """Accuracy, test loss, F1 macro, train and predict seconds, epochs."""
    y_test: Labels
    reference: Reference
    reference_source: Literal["feedback", "test"]
    saliency: Saliency


def train_cifar10(
    train: tuple[Images, Labels],
    test: tuple[Images, Labels],
    classes: list[str],
    params: TrainCifar10Params,
    reference: tuple[Images, Labels] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = True,
) -> TrainedCnn:
    """Train the recipe ``params`` names on ``train``, score it on ``test`` after each epoch
    (``on_epoch`` hears each), and build the monitoring reference from ``reference`` (held-out
    feedback, when prepare chose it) or else the test split; no file access."""
    from mltrail.models.cnn_train import train_cnn

    (x_train, y_train), (x_test, y_test) = train, test
    recipe = resolve_recipe(params)
    result = train_cnn(
        x_train,
        y_train,
        x_test,
        y_test,
        recipe,
        params.epochs,
        params.seed,
        device=params.device,
        on_epoch=on_epoch,
        progress=progress,
    )
    model = result.model.cpu().eval()
    x_ref, y_ref = test if reference is None else reference
    sample = fixed_sample(y_test, len(classes))
    maps, sample_predicted = saliency(model, x_test[sample])
    return TrainedCnn(
        model=model,
        result=result,
        recipe_name=params.recipe,
        recipe=recipe,
        classes=classes,
        metrics={
            "accuracy": result.accuracy,
            "test_loss": result.test_loss,
            "f1_macro": classification_scores(y_test, result.predictions)["f1_macro"],
            "train_time_s": result.train_time_s,
            "predict_time_s": result.predict_time_s,
            "epochs": float(params.epochs),
        },
        y_test=y_test,
        reference=build_image_reference(model, x_train, x_ref, y_ref, classes, seed=params.seed),
        reference_source="test" if reference is None else "feedback",
        saliency=Saliency(x_test[sample], maps, [int(y_test[i]) for i in sample], sample_predicted),
    )


def write_trained_cnn(trained: TrainedCnn, out: Path) -> Fitted:
    """Write the model folder's files into ``out`` (the harness adds the manifest and
    ``metrics.json``); what was written, for the manifest and the trackers."""
    from mltrail.models.cnn_io import ONNX_OPSET, export_onnx, save_cnn

    model, classes, y_test = trained.model, trained.classes, trained.y_test
    result = trained.result
    predicted = result.predictions
    save_cnn(model, out / TASK.model_file)
    export_onnx(model, out / ONNX_FILE)
    trained.reference.save(out / REFERENCE_FILE)
    shown = trained.saliency
    plot_saliency(
        out / "saliency.png", shown.images, shown.maps, classes, shown.labels, shown.predicted
    )
    history: list[dict[str, Any]] = [asdict(r) for r in result.history]
    with (out / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_curves(out / "curves.png", history, f"CIFAR-10, {trained.recipe_name} recipe")
    write_json(out / "per_class.json", per_class_report(y_test, predicted, classes))
    plot_confusion(out / "confusion_matrix.png", y_test, predicted, classes, "CIFAR-10: confusion")
    return Fitted(
        metrics=trained.metrics,
        artifacts=[
            ONNX_FILE,
            "history.csv",
            "curves.png",
            "per_class.json",
            "confusion_matrix.png",
            "saliency.png",
            REFERENCE_FILE,
        ],
        model_info=ModelInfo(
            architecture=trained.recipe.architecture,
            reference=ReferenceEntry(
                file=REFERENCE_FILE,
                sha256=sha256_file(out / REFERENCE_FILE),
                source=trained.reference_source,
            ),
            onnx=OnnxCopy(
                file=ONNX_FILE,
                sha256=sha256_file(out / ONNX_FILE),
                opset=ONNX_OPSET,
                outputs=["features", "logits"],
            ),
            recipe=asdict(trained.recipe),
            classes=classes,
            input="float32 N x 3 x 32 x 32 in [0, 1]",
        ),
        requirements=[f"torch=={importlib.metadata.version('torch')}"],
        timings={"train_s": result.train_time_s, "predict_s": result.predict_time_s},
    )


def run(
    params: Params,
    tracker: str | Reservation,
    data_dir: Path,
    out_dir: Path,
    progress: bool = True,
    stage: str | None = None,
) -> Manifest:
    """Train on the prepared data in ``data_dir``, write ``out_dir``; ``stage``: the DVC stage
    (see :func:`mltrail.stages.train.run_training`)."""
    layout = TASK.prepared
    require_prepared(data_dir, TASK)
    section = params.train_cifar10

    def fit(run: TrackedRun, out: Path) -> Fitted:
        recent = data_dir / layout.reference  # held-out feedback, when prepare chose it
        trained = train_cifar10(
            _arrays(data_dir / layout.train),
            _arrays(data_dir / layout.test),
            layout.read_classes(data_dir),
            section,
            _arrays(recent) if recent.is_file() else None,
            on_epoch=lambda r: run.log_metrics(r.metrics(), step=r.epoch),
            progress=progress,
        )
        return write_trained_cnn(trained, out)

    return run_training(
        task=TASK,
        tracker=tracker,
        params=params,
        section=section,
        data_dir=data_dir,
        out_dir=out_dir,
        fit=fit,
        stage=stage,
    )


def _arrays(path: Path) -> tuple[Images, Labels]:
    with np.load(path) as data:
        return data["x"], data["y"]
