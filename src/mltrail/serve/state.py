"""What the routes of one server share: the served models, telemetry, metrics, recent ids."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from mltrail.contracts.pointer import Pointer
from mltrail.contracts.tasks import KINDS
from mltrail.errors import MltrailError
from mltrail.models.loading import LoadedModel
from mltrail.serve.metrics import ServerMetrics
from mltrail.serve.settings import ServeSettings
from mltrail.telemetry import Telemetry, TelemetryStore

log = logging.getLogger("mltrail.serve")
RECENT_IDS = 1_000_000  # prediction ids remembered for /feedback (older ones: the store)


class ServedModels:
    """Kind -> the model serving it. A reload swaps models whole: a request sees the old
    model or the new one."""

    def __init__(self) -> None:
        self._by_kind: dict[str, LoadedModel] = {}

    def serving(self, kind: str) -> LoadedModel:
        """The model of ``kind``; 503 when none is loaded."""
        found = self._by_kind.get(kind)
        if found is None:
            raise HTTPException(503, f"no {kind} model is loaded on this server")
        return found

    def swap(self, loaded: Mapping[str, LoadedModel]) -> None:
        self._by_kind.update(loaded)

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def items(self) -> list[tuple[str, LoadedModel]]:
        return list(self._by_kind.items())

    def versions(self) -> dict[str, str]:
        return {kind: model.version for kind, model in self.items()}


class ServerState:
    """Everything the routes share: models (swapped whole on reload), telemetry, metrics."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.models = ServedModels()
        self.telemetry: Telemetry | None = None
        self.metrics = ServerMetrics(lambda: self.telemetry, self.models.items)
        self.recent: OrderedDict[str, int] = OrderedDict()  # prediction id -> class count
        self.store: TelemetryStore | None = None
        self.reload_lock = asyncio.Lock()
        self.pointer_mtime: float | None = None
        self.exposed: str | None = None  # the warning of a server open to its network
        # Prometheus children bound once, not looked up by label on every prediction.
        self._class_counters: dict[tuple[str, str], list[Any]] = {}
        self.confidence = {k: self.metrics.confidence.labels(k) for k in KINDS}

    def class_counters(self, model: LoadedModel) -> list[Any]:
        key = (model.kind, model.version)
        found = self._class_counters.get(key)
        if found is None:
            found = [self.metrics.predictions.labels(model.kind, c) for c in model.classes]
            self._class_counters[key] = found
        return found

    def configured(self) -> dict[str, str]:
        """The models to serve: the settings', else the pointer file's (as it was at start)."""
        wanted = Pointer(text=self.settings.text_model, image=self.settings.image_model)
        pointer = self.settings.pointer_file
        if pointer and len(wanted.sources()) < len(KINDS):
            try:
                wanted = wanted.fill(Pointer.read(Path(pointer)))
            except MltrailError as exc:
                log.warning("%s", exc)
        return dict(wanted.sources())

    def remember(self, prediction_id: str, classes: int) -> None:
        self.recent[prediction_id] = classes
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)
