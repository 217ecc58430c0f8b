"""Stages ``train_cifar10_{baseline,mlflow,wandb}``: a CNN in PyTorch on prepared CIFAR-10.

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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mltrail.config import Params
from mltrail.contracts.layout import ONNX_FILE, REFERENCE_FILE
from mltrail.contracts.manifest import Manifest, ModelInfo, OnnxCopy, ReferenceEntry
from mltrail.contracts.tasks import task_spec
from mltrail.fsio import sha256_file, write_json
from mltrail.models.cnn import resolve_recipe
from mltrail.models.explain import fixed_sample, plot_saliency, saliency
from mltrail.models.metrics import (
    classification_scores,
    per_class_report,
    plot_confusion,
    plot_curves,
)
from mltrail.models.reference import build_image_reference
from mltrail.stages.train import Fitted, require_prepared, run_training
from mltrail.tracking.run import Reservation, TrackedRun

TASK = task_spec("cifar10")


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
    from mltrail.models.cnn_io import ONNX_OPSET, export_onnx, save_cnn
    from mltrail.models.cnn_train import train_cnn

    layout = TASK.prepared
    require_prepared(data_dir, TASK)
    section = params.train_cifar10
    recipe = resolve_recipe(section)

    def fit(run: TrackedRun, out: Path) -> Fitted:
        with np.load(data_dir / layout.train) as train, np.load(data_dir / layout.test) as test:
            x_train, y_train, x_test, y_test = train["x"], train["y"], test["x"], test["y"]
        classes = layout.read_classes(data_dir)
        result = train_cnn(
            x_train, y_train, x_test, y_test, recipe, section.epochs, section.seed,
            device=section.device,
            on_epoch=lambda r: run.log_metrics(r.metrics(), step=r.epoch),
            progress=progress,
        )  # fmt: skip
        save_cnn(result.model, out / TASK.model_file)
        model = result.model.cpu().eval()
        export_onnx(model, out / ONNX_FILE)
        # Monitored against held-out feedback when prepare chose it, else the test split.
        recent = data_dir / layout.reference
        if recent.is_file():
            with np.load(recent) as held:
                x_ref, y_ref = held["x"], held["y"]
        else:
            x_ref, y_ref = x_test, y_test
        reference = build_image_reference(model, x_train, x_ref, y_ref, classes, seed=section.seed)
        reference.save(out / REFERENCE_FILE)
        sample = fixed_sample(y_test, len(classes))
        maps, sample_predicted = saliency(model, x_test[sample])
        plot_saliency(out / "saliency.png", x_test[sample], maps, classes,
                      [int(y_test[i]) for i in sample], sample_predicted)  # fmt: skip
        history = [asdict(r) for r in result.history]
        with (out / "history.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        plot_curves(out / "curves.png", history, f"CIFAR-10, {section.recipe} recipe")
        predicted = result.predictions
        write_json(out / "per_class.json", per_class_report(y_test, predicted, classes))
        plot_confusion(
            out / "confusion_matrix.png", y_test, predicted, classes, "CIFAR-10: confusion"
        )
        metrics = {
            "accuracy": result.accuracy,
            "test_loss": result.test_loss,
            "f1_macro": classification_scores(y_test, predicted)["f1_macro"],
            "train_time_s": result.train_time_s,
            "predict_time_s": result.predict_time_s,
            "epochs": float(section.epochs),
        }
        return Fitted(
            metrics=metrics,
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
                architecture=recipe.architecture,
                reference=ReferenceEntry(
                    file=REFERENCE_FILE,
                    sha256=sha256_file(out / REFERENCE_FILE),
                    source="feedback" if recent.is_file() else "test",
                ),
                onnx=OnnxCopy(
                    file=ONNX_FILE,
                    sha256=sha256_file(out / ONNX_FILE),
                    opset=ONNX_OPSET,
                    outputs=["features", "logits"],
                ),
                recipe=asdict(recipe),
                classes=classes,
                input="float32 N x 3 x 32 x 32 in [0, 1]",
            ),
            requirements=[f"torch=={importlib.metadata.version('torch')}"],
            timings={"train_s": result.train_time_s, "predict_s": result.predict_time_s},
        )

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
