"""Where telemetry goes, and how: the writer's settings, the default store and its variable.

The default store and ``$MLTRAIL_TELEMETRY_DSN`` are named here and nowhere else: the server
(``mltrail.serve.settings``), ``mltrail monitor`` and ``mltrail retrain`` all ask
:func:`default_store` (or :func:`store_from_env`). The variable's name itself is declared with
the other path-holding variables in ``mltrail.paths`` (a lower layer, which makes it absolute
at the command's edge).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mltrail.paths import TELEMETRY_STORE_ENV, absolute_store

DEFAULT_STORE = "telemetry.db"
"""The SQLite store beside the server, relative to the folder it runs in."""
STORE_ENV = TELEMETRY_STORE_ENV
"""``MLTRAIL_TELEMETRY_DSN``: a store's URI (SQLite path or ``postgresql://``); it may hold
a password, so it comes from the environment, not from a settings file."""

SinkName = Literal["sqlite", "postgres", "wandb", "mlflow"]


def store_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MLTRAIL_TELEMETRY_DSN`` when set (and not empty)."""
    return (os.environ if environ is None else environ).get(STORE_ENV) or None


def default_store(environ: Mapping[str, str] | None = None) -> str:
    """The store to read when none is named: ``$MLTRAIL_TELEMETRY_DSN``, else
    ``telemetry.db`` in the working directory (absolute, see ``mltrail.paths``)."""
    return store_from_env(environ) or absolute_store(DEFAULT_STORE)


class TelemetrySettings(BaseModel):
    """Where prediction records go, and how they get there."""

    model_config = ConfigDict(extra="forbid")

    sinks: list[SinkName] = ["sqlite"]
    """Any of ``sqlite`` (the local store the monitor reads), ``postgres`` (the same store on
    PostgreSQL, shared by replicas), ``wandb`` (offline by default, as the paper), ``mlflow``;
    ``[]`` turns telemetry off."""
    sqlite_path: str = DEFAULT_STORE
    postgres_dsn: str | None = None
    """``postgresql://user[:password]@host:5432/db``; or ``$MLTRAIL_TELEMETRY_DSN``."""
    queue_size: int = Field(default=100_000, gt=0)
    """Records waiting for the writer; when full, new records are dropped and counted."""
    batch_size: int = Field(default=1000, gt=0)
    flush_interval_s: float = Field(default=0.2, gt=0)
    retry_buffer: int = Field(default=1_000_000, gt=0)
    """Records kept per sink while it is down; beyond that the oldest are dropped and counted."""
    spill_dir: str = ".mltrail/telemetry-spill"
    """Records a sink still had not taken at shutdown are written here and sent on next start."""
    wandb_project: str = "mltrail-serving"
    wandb_mode: Literal["offline", "online"] = "offline"
    wandb_dir: str = "."
    mlflow_uri: str = "sqlite:///mlflow.db"
    mlflow_experiment: str = "mltrail-serving"
