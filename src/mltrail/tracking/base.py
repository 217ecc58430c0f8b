"""The tracking contract every backend implements, and the values that cross it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from mltrail.contracts.tasks import Flavor

Status = Literal["finished", "failed", "killed"]


@dataclass(frozen=True)
class RunStart:
    run_id: str
    """mltrail's id of the run (a uuid hex); backends that accept an id use it."""
    run_name: str
    experiment: str
    start_time: float
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRef:
    """A model folder written by a training stage, with the file its flavor loads."""

    path: Path
    flavor: Flavor
    file: str
    sha256: str
    info: Mapping[str, Any] = field(default_factory=dict)
    """Flavor details, e.g. the CNN architecture, the pip requirements."""


class Tracker(Protocol):
    """A tracking backend: one run at a time, from ``start`` to ``finish``.

    Called by the exporter (never by training code directly), in journal order, with the
    times the training process recorded, so the backend shows when things happened in training.
    """

    name: ClassVar[str]

    def start(self, run: RunStart) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None, timestamp: float
    ) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def log_model(self, model: ModelRef) -> None: ...

    def finish(self, status: Status, end_time: float) -> dict[str, str]:
        """End the run; return where to find it (at least ``run_id`` and ``uri``)."""
        ...

    def abort(self) -> None:
        """Release what a failed export holds (best effort; must not raise)."""
        ...


class NoneTracker:
    """The baseline: tracks nothing, costs nothing."""

    name: ClassVar[str] = "none"

    def start(self, run: RunStart) -> None:
        self._run_id = run.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None, timestamp: float) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_artifact(self, path: Path) -> None:
        pass

    def log_model(self, model: ModelRef) -> None:
        pass

    def finish(self, status: Status, end_time: float) -> dict[str, str]:
        return {"run_id": self._run_id, "uri": ""}

    def abort(self) -> None:
        pass
