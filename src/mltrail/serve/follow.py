"""Following an MLflow registry alias: a server whose model is ``models:/NAME@ALIAS`` serves
whatever version the alias names, on any host, with no pointer file and no ``--server``.

Every ``alias_poll_s`` seconds the server asks the registry which version the alias names (one
small call, no download). When it is not the version serving, that version is loaded beside
the serving one and swapped in as a hot reload does (:func:`mltrail.serve.reload.swap_in`:
hashes verified, the old model serving until the new one is ready). A version that cannot be
served (tampered, wrong kind) is logged once and not fetched again until the alias moves on; a
registry that cannot be reached is logged once and asked again at the next poll. Nothing stops
the watcher but cancellation. A folder, ``runs:/`` or ``models:/NAME/VERSION`` is fixed and
not followed; a model swapped in by ``POST /admin/reload`` is followed if it is an alias.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi.concurrency import run_in_threadpool

from mltrail.errors import MltrailError
from mltrail.models.loading import LoadedModel, RegistryError, registry_version, split_registry_uri
from mltrail.serve.reload import swap_in
from mltrail.serve.state import ServerState
from mltrail.tracking.registry import mlflow_fail_fast

log = logging.getLogger("mltrail.serve")

REGISTRY_DOWN = "registry"
"""The problem key of an unreachable registry: its messages differ on every call (object
addresses, ports), so it is reported once as a kind of problem, not per message."""


def followed_alias(source: str) -> tuple[str, str] | None:
    """(NAME, ALIAS) of a ``models:/NAME@ALIAS`` source; None for a source that is fixed."""
    parts = split_registry_uri(source)
    if parts is None or parts[1] != "@":
        return None
    return parts[0], parts[2]


async def follow_aliases(state: ServerState, every_s: float) -> None:
    """Poll the registry every ``every_s`` seconds for each served alias, until cancelled."""
    # The watcher is the retry loop: a registry that is down should fail the call at once,
    # not hold it in MLflow's own backoff (7 retries, about 4 minutes by default).
    mlflow_fail_fast()
    follower = AliasFollower(state)
    while True:
        await asyncio.sleep(every_s)
        await follower.poll()


class AliasFollower:
    """One poll of every served alias; remembers what it reported and what it refused."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.reported: dict[str, str] = {}  # kind -> the problem logged last
        self.refused: dict[str, tuple[str, str]] = {}  # kind -> (alias URI, version) refused

    async def poll(self) -> None:
        for kind, model in self.state.models.items():
            alias = followed_alias(model.source)
            if alias is None:
                continue
            try:
                await self._check(kind, model, *alias)
            except Exception as exc:
                # A watcher that dies stops following without a word: log and carry on.
                self._report(kind, model, exc)
            else:
                if self.reported.pop(kind, None) == REGISTRY_DOWN:
                    log.info("%s: the registry answers again", model.source)

    async def _check(self, kind: str, model: LoadedModel, name: str, alias: str) -> None:
        version = await run_in_threadpool(registry_version, name, alias)
        if version == model.registry_version or self.refused.get(kind) == (model.source, version):
            return
        log.info(
            "%s now names version %s (serving version %s): loading it",
            model.source,
            version,
            model.registry_version,
        )
        try:
            await swap_in(self.state, {kind: model.source})
        except RegistryError:
            raise  # the registry, not the model: asked again at the next poll
        except MltrailError as exc:
            # Not fetched again for every poll: the same version is the same bytes.
            self.refused[kind] = (model.source, version)
            log.warning(
                "%s names version %s, which cannot be served; still serving version %s (%s) "
                "until the alias moves: %s",
                model.source,
                version,
                model.registry_version,
                model.version,
                exc,
            )

    def _report(self, kind: str, model: LoadedModel, exc: Exception) -> None:
        problem = REGISTRY_DOWN if isinstance(exc, RegistryError) else f"{type(exc).__name__}"
        if self.reported.get(kind) == problem:
            return
        self.reported[kind] = problem
        unexpected = not isinstance(exc, MltrailError)
        log.warning(
            "following %s: %s; still serving version %s (%s), asking again every %s s",
            model.source,
            exc,
            model.registry_version,
            model.version,
            self.state.settings.alias_poll_s,
            exc_info=unexpected,
        )
