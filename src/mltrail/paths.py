"""Paths that reach mltrail from outside, resolved once against the folder the user ran in.

A relative path means "relative to where I typed the command". mltrail hands work to other
processes and folders (DVC stages, the benchmark's fresh processes run in their work folder,
the tracking exporter, the retrain loop, the scenario's project copy), and a relative path
read there points somewhere else: ``MLTRAIL_DATA_MIRROR=../shared/datasets`` resolved inside
``.mltrail/bench/`` names a folder that does not exist. So every path is made absolute at the
edge, before any subprocess, DVC stage or ``chdir``:

- the environment (:data:`PATH_ENV`, :data:`STORE_ENV`) by :func:`resolve_environment`,
  which the ``mltrail`` command calls first and whose result its children inherit;
- params (data mirror, sources, feedback, download and journal folders, SQLite URIs,
  releases) by :func:`mltrail.config.resolve_params`, called by ``load_params``;
- server settings (model folders, telemetry paths) by ``mltrail.serve.settings``; the default
  telemetry store by ``mltrail.telemetry.default_store``.

URIs that are not local paths (``runs:/``, ``models:/``, ``http://``, ``postgresql://``) are
left as they are.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

MIRROR_ENV = "MLTRAIL_DATA_MIRROR"
"""A folder that holds local copies of the datasets (``data.mirror`` in params)."""

PATH_ENV = (
    MIRROR_ENV,
    "MLTRAIL_POINTER_FILE",
    "MLTRAIL_SERVE_SETTINGS",
    "MLTRAIL_KNOWN_HOSTS",
)
"""Environment variables that hold a local path."""

SOURCE_ENV = ("MLTRAIL_TEXT_MODEL", "MLTRAIL_IMAGE_MODEL")
"""Environment variables that hold a model source: a folder, or an MLflow URI."""

TELEMETRY_STORE_ENV = "MLTRAIL_TELEMETRY_DSN"
"""The telemetry store (``mltrail.telemetry.STORE_ENV``; read by ``telemetry.default_store``)."""
STORE_ENV = (TELEMETRY_STORE_ENV,)
"""Environment variables that hold a store: a SQLite path or URI, or a PostgreSQL DSN."""

SQLITE = "sqlite:///"
_URI_SCHEMES = ("runs:/", "models:/", "http://", "https://", "s3://", "gs://", "file:")


def absolute(value: str | Path, base: Path | None = None) -> Path:
    """``value`` as an absolute path (``~`` expanded), relative ones against ``base`` (the
    working directory when None). Symlinks are kept: the path the user named is recorded."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base or Path.cwd()) / path


def absolute_sqlite_uri(uri: str, base: Path | None = None) -> str:
    """``sqlite:///mlflow.db`` (relative to the working directory) as ``sqlite:////abs/...``;
    any other URI unchanged. MLflow also caches one store per URI string, so an absolute one
    cannot reach another folder's database after a ``chdir``."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        rest = uri.removeprefix(SQLITE)
        if rest and not rest.startswith(":memory:"):
            return SQLITE + str(absolute(rest, base))
    return uri


def absolute_store(store: str, base: Path | None = None) -> str:
    """A telemetry store: a SQLite path or ``sqlite:///`` URI made absolute; a PostgreSQL DSN
    (or any other URI) unchanged."""
    if store.startswith(SQLITE):
        return absolute_sqlite_uri(store, base)
    if "://" in store:
        return store
    return str(absolute(store, base))


def absolute_source(source: str, base: Path | None = None) -> str:
    """A model source: a folder made absolute; ``runs:/``, ``models:/`` and other URIs kept."""
    if source.startswith(_URI_SCHEMES) or "://" in source:
        return source
    return str(absolute(source, base))


def resolve_environment(
    environ: MutableMapping[str, str] | None = None, base: Path | None = None
) -> None:
    """Rewrite the path-holding ``MLTRAIL_*`` variables of ``environ`` (``os.environ``) as
    absolute, so that every child process and every later ``chdir`` reads the same folder."""
    env = os.environ if environ is None else environ
    base = base or Path.cwd()
    for name in PATH_ENV:
        if env.get(name):
            env[name] = str(absolute(env[name], base))
    for name in SOURCE_ENV:
        if env.get(name):
            env[name] = absolute_source(env[name], base)
    for name in STORE_ENV:
        if env.get(name):
            env[name] = absolute_store(env[name], base)


def keep_wandb_files_in(root: Path) -> None:
    """W&B's data, cache, artifact and config folders under ``root/wandb/`` (where the
    environment does not name them), not in the home folder; W&B quiet and without its own git
    check (mltrail records the commit itself). Called before ``import wandb`` by the tracker,
    the serving sink and the benchmark's paper-style run."""
    for var, sub in (
        ("WANDB_DATA_DIR", ".data"),
        ("WANDB_CACHE_DIR", ".cache"),
        ("WANDB_ARTIFACT_DIR", ".artifacts"),
        ("WANDB_CONFIG_DIR", ".config"),
    ):
        os.environ.setdefault(var, str(root / "wandb" / sub))
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
