"""Trackers by name or URI; heavy clients are imported only when their backend is built.

A spec is a comma-separated list: ``none``, ``mlflow``, ``wandb``, ``mlflow,wandb``, or a URI
standing for MLflow at that address (``http://host:5000``, ``sqlite:///x.db``,
``postgresql://...``), or ``wandb://<project>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mltrail.config import TrackingParams
from mltrail.errors import ParamsError
from mltrail.tracking.base import NoneTracker, Tracker

NAMES = ("none", "mlflow", "wandb")
MLFLOW_SCHEMES = (
    "http://",
    "https://",
    "sqlite://",
    "postgresql://",
    "postgresql+",
    "mysql://",
    "file:",
)


@dataclass(frozen=True)
class BackendSpec:
    """A backend chosen by the user: its name and the settings it needs (plain values, so the
    spec can be written into the journal and rebuilt in the exporter process)."""

    name: str
    target: str
    """The MLflow tracking URI or the W&B project; empty for ``none``."""

    def build(self, settings: TrackingParams) -> Tracker:
        return _BUILDERS[self.name](self, settings)


def parse(spec: str, settings: TrackingParams) -> list[BackendSpec]:
    """Backends for ``spec``; ``none`` alone gives an empty list (nothing to export)."""
    backends: list[BackendSpec] = []
    for raw in (part.strip() for part in spec.split(",")):
        if raw == "none":
            continue
        if raw == "mlflow":
            backends.append(BackendSpec("mlflow", settings.mlflow_uri))
        elif raw.startswith(MLFLOW_SCHEMES):
            backends.append(BackendSpec("mlflow", raw))
        elif raw == "wandb":
            backends.append(BackendSpec("wandb", settings.wandb_project))
        elif raw.startswith("wandb://") and len(raw) > len("wandb://"):
            backends.append(BackendSpec("wandb", raw.removeprefix("wandb://")))
        else:
            raise ParamsError(
                f"unknown tracker {raw!r}",
                hint=f"use one or more of {', '.join(NAMES)} (comma-separated), an MLflow "
                "tracking URI (http://..., sqlite:///...) or wandb://<project>",
            )
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ParamsError(f"tracker spec {spec!r} names a backend twice")
    return backends


def _build_mlflow(spec: BackendSpec, settings: TrackingParams) -> Tracker:
    from mltrail.tracking.mlflow_backend import MlflowTracker

    return MlflowTracker(spec.target)


def _build_wandb(spec: BackendSpec, settings: TrackingParams) -> Tracker:
    from mltrail.tracking.wandb_backend import WandbTracker

    return WandbTracker(spec.target, settings.wandb_mode, settings.wandb_dir)


def _build_none(spec: BackendSpec, settings: TrackingParams) -> Tracker:
    return NoneTracker()


_BUILDERS: dict[str, Callable[[BackendSpec, TrackingParams], Tracker]] = {
    "none": _build_none,
    "mlflow": _build_mlflow,
    "wandb": _build_wandb,
}
