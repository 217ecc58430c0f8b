"""Trackers by name or URI; heavy clients are imported only when their backend is built.

A spec is a comma-separated list: ``none``, ``mlflow``, ``wandb``, ``mlflow,wandb``, or a URI
standing for MLflow at that address (``http://host:5000``, ``sqlite:///x.db``,
``postgresql://...``), or ``wandb://<project>``.

A URI's credentials never reach a record: :func:`parse` keeps each target redacted
(:func:`mltrail.contracts.secrets.redact_uri`: ``user:***@host``), and that is what journals,
manifests and export states hold. The real URI is needed only where a connection is made, and
comes from the environment there (:func:`connect_uri`), never from a file or a command line:

- the exporter a training starts gets it as ``MLFLOW_TRACKING_URI`` in its environment
  (:func:`exporter_env`; the environment of a process is readable only by its user, its
  command line by everyone);
- ``mltrail tracking sync`` and ``mltrail promote``, run later by hand, take it from
  ``MLFLOW_TRACKING_URI`` when that redacts to the recorded target; otherwise the URI is used
  without the password, which the driver completes from its own sources: ``PGPASSWORD`` or
  ``~/.pgpass`` for PostgreSQL (libpq, under psycopg), ``MLFLOW_TRACKING_USERNAME`` /
  ``MLFLOW_TRACKING_PASSWORD`` for an MLflow server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from mltrail.config import TrackingParams
from mltrail.contracts.secrets import REDACTED, hide_secrets, redact_uri, without_secrets
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
    """The MLflow tracking URI (its credentials redacted) or the W&B project; empty for
    ``none``."""

    def build(self, settings: TrackingParams) -> Tracker:
        return _BUILDERS[self.name](self, settings)


def parse(spec: str, settings: TrackingParams) -> list[BackendSpec]:
    """Backends for ``spec``; ``none`` alone gives an empty list (nothing to export)."""
    backends: list[BackendSpec] = []
    for raw in (part.strip() for part in spec.split(",")):
        if raw == "none":
            continue
        if raw == "mlflow":
            backends.append(BackendSpec("mlflow", redact_uri(settings.mlflow_uri)))
        elif raw.startswith(MLFLOW_SCHEMES):
            backends.append(BackendSpec("mlflow", redact_uri(raw)))
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


MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
"""MLflow's own variable: where the real (unredacted) tracking URI is passed on."""


def _mlflow_uri(raw: str, settings: TrackingParams) -> str | None:
    if raw == "mlflow":
        return settings.mlflow_uri
    return raw if raw.startswith(MLFLOW_SCHEMES) else None


def exporter_env(spec: str, settings: TrackingParams) -> dict[str, str]:
    """What the exporter of a run under ``spec`` needs in its environment to connect: the
    MLflow URI, when it holds credentials (the journal holds it redacted)."""
    for raw in (part.strip() for part in spec.split(",")):
        uri = _mlflow_uri(raw, settings)
        if uri is not None and redact_uri(uri) != uri:
            return {MLFLOW_URI_ENV: uri}
    return {}


def mlflow_fail_fast(timeout_s: int = 10) -> None:
    """Make MLflow's HTTP calls fail at once on a server that is down, for callers that retry
    on their own schedule (or only report): MLflow's own backoff holds a call for minutes by
    default. No usage telemetry either (no calls out of a closed network). Values the user
    set win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def connect_uri(target: str) -> str:
    """The URI to connect to for a recorded (redacted) MLflow target: ``$MLFLOW_TRACKING_URI``
    when it is that target with its credentials, else the target without them (the driver
    reads ``PGPASSWORD`` / ``~/.pgpass``; MLflow its username and password variables)."""
    if REDACTED not in target:
        return target
    given = os.environ.get(MLFLOW_URI_ENV)
    if given and redact_uri(given) == target:
        return given
    return without_secrets(target)


def hide(text: str, target: str) -> str:
    """``text`` (an error, a log line) with every credential of ``target``'s real URI
    replaced by ``***``."""
    return hide_secrets(text, connect_uri(target))


def _build_mlflow(spec: BackendSpec, settings: TrackingParams) -> Tracker:
    from mltrail.tracking.mlflow_backend import MlflowTracker

    return MlflowTracker(connect_uri(spec.target), recorded_uri=spec.target)


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
