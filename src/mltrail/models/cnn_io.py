"""Saving and loading CNN weights without pickle (``torch.load(weights_only=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from mltrail.errors import MltrailError
from mltrail.models.cnn import Architecture, build


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
