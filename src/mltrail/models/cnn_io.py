"""Saving and loading CNN weights without pickle (``torch.load(weights_only=True)``), and the
ONNX copy of the model that the server runs under ONNX Runtime, without torch.

The ONNX graph has one input, ``images`` (N x 3 x 32 x 32 float32 in [0, 1]), and two outputs:
``features`` (the penultimate activations: everything but the last layer, what monitoring
projects) and ``logits`` (the last layer on those features), with N free. It is written by
the TorchScript-based exporter (``dynamo=False``): it needs only the ``onnx`` package, where
the torch.export-based one also needs onnxscript and onnx-ir, for the same graph of this
fixed, branch-free network.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import cast

import torch
from torch import nn

from mltrail.errors import MltrailError
from mltrail.models.cnn import Architecture, build

ONNX_INPUT = "images"
ONNX_OUTPUTS = ("features", "logits")
ONNX_OPSET = 17


def save_cnn(model: nn.Module, path: Path) -> None:
    torch.save(model.state_dict(), path)


def load_cnn(path: Path, architecture: str) -> nn.Module:
    if architecture not in ("paper", "fast"):
        raise MltrailError(f"unknown CNN architecture {architecture!r} for {path}")
    model = build(cast(Architecture, architecture))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise MltrailError(f"{path} is not a {architecture} CNN state dict: {exc}") from None
    return model.eval()


class _FeaturesAndLogits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        assert isinstance(model, nn.Sequential)
        self.body, self.head = model[:-1], model[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.head(features)


def export_onnx(model: nn.Module, path: Path) -> None:
    """Write ``model`` (a trained CNN) as ONNX: input ``images``, outputs ``features`` and
    ``logits`` (see the module's docstring), any batch size. Exported in eval mode on the CPU;
    ``model`` itself is left as it was."""
    wrapper = _FeaturesAndLogits(model).cpu().eval()  # a new module starts in training mode
    was_training = model.training
    model.eval()
    batch = {0: "n"}
    try:
        with warnings.catch_warnings():
            # "legacy TorchScript-based ONNX export": chosen on purpose, see the docstring.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                wrapper,
                (torch.zeros(2, 3, 32, 32),),
                str(path),
                dynamo=False,
                input_names=[ONNX_INPUT],
                output_names=list(ONNX_OUTPUTS),
                dynamic_axes=dict.fromkeys((ONNX_INPUT, *ONNX_OUTPUTS), batch),
                opset_version=ONNX_OPSET,
            )
    finally:
        model.train(was_training)
