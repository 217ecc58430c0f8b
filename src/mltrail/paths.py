"""Paths that reach mltrail from outside, resolved once against the folder the user ran in.

A relative path means "relative to where I typed the command". mltrail hands work to other
processes and folders (DVC stages, the benchmark's fresh processes run in their work folder,
the tracking exporter, the retrain loop, the scenario's project copy), and a relative path
read there points somewhere else: ``MLTRAIL_DATA_MIRROR=../shared/datasets`` resolved inside
``.mltrail/bench/`` names a folder that does not exist. So every path is made absolute at the
edge, before any subprocess, DVC stage or ``chdir``:

- the environment (every ``MLTRAIL_*`` variable that holds a path, a model source or a
  store, as declared in :mod:`mltrail.settings`) by :func:`resolve_environment`, which the
  ``mltrail`` command calls first and whose result its children inherit;
- params (data mirror, sources, feedback, download and journal folders, SQLite URIs,
  releases) by :func:`mltrail.config.resolve_params`, called by ``load_params``;
- server settings (model folders, pointer file, telemetry paths: the same declarations) by
  :func:`resolve_fields`, which ``mltrail.serve.settings`` calls; the default telemetry store
  by ``mltrail.telemetry.default_store``.

URIs that are not local paths (``runs:/``, ``models:/``, ``http://``, ``postgresql://``) are
left as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

MIRROR_ENV = "MLTRAIL_DATA_MIRROR"
"""``settings.Environment.data_mirror``'s variable, named here too so that the command's help
can say it without importing pydantic (tests/test_settings.py checks the two agree)."""

if TYPE_CHECKING:  # pydantic and the declarations load only when a path is resolved: not
    # for `mltrail --help`, which must stay light (benchmarks/results/cli_startup.md)
    from pydantic import BaseModel

    from mltrail.settings import Holds

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


def is_uri(value: str) -> bool:
    """Whether ``value`` is a URI (``runs:/``, ``s3://bucket``, any ``scheme://``, ``file:``)
    rather than a local path."""
    return value.startswith(_URI_SCHEMES) or "://" in value


def absolute_source(source: str, base: Path | None = None) -> str:
    """A model source: a folder made absolute; ``runs:/``, ``models:/`` and other URIs kept."""
    if is_uri(source):
        return source
    return str(absolute(source, base))


def _absolute_path(value: str, base: Path | None = None) -> str:
    return str(absolute(value, base))


_RESOLVE: dict[str, Callable[[str, Path | None], str]] = {
    "path": _absolute_path,
    "source": absolute_source,
    "store": absolute_store,
    "sqlite_uri": absolute_sqlite_uri,
}


def resolve(holds: Holds, value: str, base: Path | None = None) -> str:
    """``value`` made absolute as what it holds needs (:class:`~mltrail.settings.Holds`)."""
    return _RESOLVE[holds.what](value, base)


def resolve_environment(
    environ: MutableMapping[str, str] | None = None, base: Path | None = None
) -> None:
    """Rewrite the path-holding ``MLTRAIL_*`` variables of ``environ`` (``os.environ``) as
    absolute, so that every child process and every later ``chdir`` reads the same folder."""
    from mltrail.settings import variables

    env = os.environ if environ is None else environ
    base = base or Path.cwd()
    for var in variables().values():
        if var.holds is not None and env.get(var.name):
            env[var.name] = resolve(var.holds, env[var.name], base)


Model = TypeVar("Model", bound="BaseModel")


def resolve_fields(model: Model, base: Path | None = None) -> Model:
    """``model`` with every field declared to hold a path, a source or a store (nested models
    too) made absolute against ``base`` (the working directory)."""
    from pydantic import BaseModel

    from mltrail.settings import Holds

    base = base or Path.cwd()
    update: dict[str, object] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            update[name] = resolve_fields(value, base)
            continue
        holds = Holds.of(field)
        if holds is not None and isinstance(value, str):
            update[name] = resolve(holds, value, base)
    return model.model_copy(update=update)


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
