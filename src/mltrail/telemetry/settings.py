"""Where telemetry goes, and how: the writer's settings, the default store and its variable.

The settings (:class:`TelemetrySettings`, the server's ``telemetry`` section) and the variable
``$MLTRAIL_TELEMETRY_DSN`` are declared with every other one in :mod:`mltrail.settings`; the
server (``mltrail.serve.settings``), ``mltrail monitor`` and ``mltrail retrain`` all ask
:func:`default_store` (or :func:`store_from_env`) for the store.
"""

from __future__ import annotations

from collections.abc import Mapping

from mltrail.paths import absolute_store
from mltrail.settings import (
    DEFAULT_STORE,
    Environment,
    SinkName,
    TelemetrySettings,
    env_name,
)

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "SinkName",
    "TelemetrySettings",
    "default_store",
    "store_from_env",
]

STORE_ENV = env_name(Environment, "telemetry_dsn")
"""``MLTRAIL_TELEMETRY_DSN``: a store's URI (SQLite path or ``postgresql://``); it may hold
a password, so it comes from the environment, not from a settings file."""


def store_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MLTRAIL_TELEMETRY_DSN`` when set (and not empty)."""
    return Environment.read(environ).telemetry_dsn


def default_store(environ: Mapping[str, str] | None = None) -> str:
    """The store to read when none is named: ``$MLTRAIL_TELEMETRY_DSN``, else
    ``telemetry.db`` in the working directory (absolute, see ``mltrail.paths``)."""
    return store_from_env(environ) or absolute_store(DEFAULT_STORE)
