"""Swapping the served models: on ``POST /admin/reload``, and when the pointer file changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from mltrail.contracts.pointer import Pointer
from mltrail.errors import MltrailError
from mltrail.models.loading import LoadedModel, ModelLoadError, load
from mltrail.serve.state import ServerState

log = logging.getLogger("mltrail.serve")


async def reload(state: ServerState, wanted: Pointer) -> dict[str, str]:
    """Load each wanted model beside the serving one; swap only when all loaded. A model that
    cannot be loaded is a 409 with the reason, and the old models keep serving."""
    sources = wanted.sources()
    if not sources:
        raise HTTPException(422, "name a text_model and/or an image_model to load")
    try:
        loaded = await swap_in(state, sources)
    except MltrailError as exc:
        log.warning("reload of %s failed, still serving the old model: %s", sources, exc)
        raise HTTPException(409, f"reload failed, still serving the old model: {exc}") from None
    return {k: m.version for k, m in loaded.items()}


async def swap_in(state: ServerState, sources: Mapping[str, str]) -> dict[str, LoadedModel]:
    """Load each of ``sources`` (kind -> source) beside the serving model, then swap them in
    together; a :class:`MltrailError` (for the caller to log) when one cannot be loaded, and
    the old models keep serving. One load at a time (``reload_lock``)."""
    async with state.reload_lock:
        loaded = {}
        for kind, source in sources.items():
            loaded[kind] = await _load(kind, str(source))
        state.models.swap(loaded)
        for kind, model in loaded.items():
            log.info("now serving %s model %s", kind, describe(model))
    return loaded


def describe(model: LoadedModel) -> str:
    """``<version> from <source> (<runtime>[, registry version N])``, for the log."""
    registry = f", registry version {model.registry_version}" if model.registry_version else ""
    return f"{model.version} from {model.source} ({model.runtime}{registry})"


async def _load(kind: str, source: str) -> LoadedModel:
    try:
        return await run_in_threadpool(load, source, kind)
    except MltrailError:
        raise
    except Exception:  # load() turns a bad model into MltrailError; this would be our bug
        log.exception("loading %s from %r failed", kind, source)
        raise ModelLoadError("an unexpected error (in the server's log)") from None


async def watch_pointer(state: ServerState, every_s: float = 1.0) -> None:
    """Reload when the pointer file changes: ``{"text": <source>, "image": <source>}``.

    Nothing stops it but cancellation: a pointer that cannot be read or names a model that
    cannot be loaded is logged (once, until the problem changes) and the old models keep
    serving; the next change is read as usual."""
    path = Path(str(state.settings.pointer_file))
    # The file as it was at start is what the server was configured with; a change, or its
    # first appearance, is a new pointer.
    state.pointer_mtime = _mtime(path)
    reported: str | None = None  # the problem logged last, not logged again every second
    while True:
        try:
            await _follow(state, path)
            reported = None
        except Exception as exc:
            # A watcher that dies ends hot reload without a word: log and carry on.
            problem = str(getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}")
            if problem != reported:
                unexpected = not isinstance(exc, (HTTPException, MltrailError))
                log.warning("pointer file %s: %s", path, problem, exc_info=unexpected)
                reported = problem
        await asyncio.sleep(every_s)


async def _follow(state: ServerState, path: Path) -> None:
    """Reload if the pointer file changed since it was last read."""
    mtime = _mtime(path)
    if mtime is None or mtime == state.pointer_mtime:
        return
    state.pointer_mtime = mtime
    await reload(state, Pointer.read(path))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None
