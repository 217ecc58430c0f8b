"""Swapping the served models: on ``POST /admin/reload``, and when the pointer file changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from mltrail.contracts.pointer import Pointer
from mltrail.errors import MltrailError
from mltrail.models.loading import load
from mltrail.serve.state import ServerState

log = logging.getLogger("mltrail.serve")


async def reload(state: ServerState, wanted: Pointer) -> dict[str, str]:
    """Load each wanted model beside the serving one; swap only when all loaded."""
    sources = wanted.sources()
    if not sources:
        raise HTTPException(422, "name a text_model and/or an image_model to load")
    async with state.reload_lock:
        loaded = {}
        for kind, source in sources.items():
            try:
                loaded[kind] = await run_in_threadpool(load, str(source), kind)
            except MltrailError as exc:
                log.warning(
                    "reload of %s from %s failed, still serving the old model: %s",
                    kind,
                    source,
                    exc,
                )
                raise HTTPException(
                    409, f"reload failed, still serving the old model: {exc}"
                ) from None
        state.models.swap(loaded)
        for kind, model in loaded.items():
            log.info(
                "now serving %s model %s from %s (%s)",
                kind,
                model.version,
                model.source,
                model.runtime,
            )
    return {k: m.version for k, m in loaded.items()}


async def watch_pointer(state: ServerState, every_s: float = 1.0) -> None:
    """Reload when the pointer file changes: ``{"text": <source>, "image": <source>}``."""
    path = Path(str(state.settings.pointer_file))
    # The file as it was at start is what the server was configured with; a change, or its
    # first appearance, is a new pointer.
    state.pointer_mtime = path.stat().st_mtime if path.exists() else None
    while True:
        with contextlib.suppress(FileNotFoundError):
            mtime = path.stat().st_mtime
            if mtime != state.pointer_mtime:
                state.pointer_mtime = mtime
                try:
                    await reload(state, Pointer.read(path))
                except (MltrailError, HTTPException) as exc:
                    log.warning("pointer file %s: %s", path, getattr(exc, "detail", exc))
        await asyncio.sleep(every_s)
