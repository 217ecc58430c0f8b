"""Every ``MLTRAIL_*`` environment variable, declared once, typed, with its default and meaning.

Two groups, both pydantic models whose fields *are* the declarations:

- :class:`Environment`: the variables any ``mltrail`` command may read (the data mirror, the
  known_hosts file, the CNN runtime, the telemetry store, the server's settings file);
- :class:`ServeSettingsBase`: the server's settings. Each key is also a variable,
  ``MLTRAIL_<KEY>``, and a nested key joins its path with ``__``: ``telemetry.sinks`` is
  ``MLTRAIL_TELEMETRY__SINKS`` (a list as JSON: ``'["sqlite","wandb"]'``).
  ``mltrail.serve.settings.ServeSettings`` reads them with pydantic-settings.

A field that holds a local path, a model source or a store says so (:class:`Holds`), so that
``mltrail.paths`` can make every such variable and setting absolute at the edge without naming
them again. :func:`variables` lists them all (docs/serving.md's table is checked against it, and
a test checks that no ``MLTRAIL_*`` name in ``src/`` is missing here).

This module is the lowest layer: stdlib and pydantic only, cheap to import (the ``mltrail``
command imports it at start, before it knows the verb). pydantic-settings, which reads the
server's variables, is imported by ``mltrail.serve.settings`` alone.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import os
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

PREFIX = "MLTRAIL_"
NESTED_DELIMITER = "__"
DEFAULT_STORE = "telemetry.db"
"""The SQLite telemetry store beside the server, relative to the folder it runs in."""


@dataclass(frozen=True)
class Holds:
    """What a variable's value names, for ``mltrail.paths`` to make absolute: ``path`` (a
    local file or folder), ``source`` (a model folder or an MLflow ``runs:/``/``models:/``
    URI), ``store`` (a SQLite path or URI, or a PostgreSQL DSN), ``sqlite_uri`` (an MLflow
    tracking URI)."""

    what: Literal["path", "source", "store", "sqlite_uri"]

    @staticmethod
    def of(field: FieldInfo) -> Holds | None:
        """What ``field`` is declared to hold; None for a plain value."""
        return next((m for m in field.metadata if isinstance(m, Holds)), None)


PATH = Holds("path")
SOURCE = Holds("source")
STORE = Holds("store")
SQLITE_URI = Holds("sqlite_uri")


class _Declared(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Environment(_Declared):
    """The variables any mltrail command reads; unset or empty ones are None."""

    model_config = ConfigDict(frozen=True)

    data_mirror: Annotated[str | None, PATH] = None
    """Folder with local copies of the datasets, used when params.yaml's `data.mirror` is
    null."""
    known_hosts: Annotated[str | None, PATH] = None
    """known_hosts file that `mltrail dvc` checks SSH remotes against (default
    `~/.ssh/known_hosts`)."""
    cnn_runtime: str = "auto"
    """What runs a served CNN: `auto` (ONNX Runtime when the model has an ONNX copy and
    onnxruntime is installed, else torch), `onnx` or `torch`."""
    telemetry_dsn: Annotated[str | None, STORE] = None
    """The telemetry store `mltrail monitor` and `mltrail retrain` read (a SQLite path or a
    `postgresql://` DSN; default `telemetry.db`); the server writes to it as
    `telemetry.postgres_dsn`. It may hold a password: environment only."""
    serve_settings: Annotated[str | None, PATH] = None
    """The server's settings file (YAML), when `mltrail serve` has no `--settings`."""

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """The variables as set in ``environ`` (``os.environ``)."""
        env = os.environ if environ is None else environ
        found = {name: env.get(env_name(cls, name)) for name in cls.model_fields}
        return cls.model_validate({k: v for k, v in found.items() if v})


SinkName = Literal["sqlite", "postgres", "wandb", "mlflow"]


class TelemetrySettings(_Declared):
    """Where prediction records go, and how they get there."""

    sinks: list[SinkName] = ["sqlite"]
    """Any of `sqlite` (the local store the monitor reads), `postgres` (the same store on
    PostgreSQL, shared by replicas), `wandb` (offline by default, as the paper), `mlflow`;
    `[]` turns telemetry off."""
    sqlite_path: Annotated[str, PATH] = DEFAULT_STORE
    """The SQLite store."""
    postgres_dsn: str | None = None
    """`postgresql://user[:password]@host:5432/db`; or `$MLTRAIL_TELEMETRY_DSN`."""
    queue_size: int = Field(default=100_000, gt=0)
    """Records waiting for the writer; when full, new records are dropped and counted."""
    batch_size: int = Field(default=1000, gt=0)
    """Records per write."""
    flush_interval_s: float = Field(default=0.2, gt=0)
    """How often the writer drains the queue."""
    retry_buffer: int = Field(default=1_000_000, gt=0)
    """Records kept per sink while it is down; beyond that the oldest are dropped and counted."""
    spill_dir: Annotated[str, PATH] = ".mltrail/telemetry-spill"
    """Records a sink still had not taken at shutdown are written here and sent on next start."""
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    """How long shutdown retries a sink that is down before spilling what it still holds."""
    wandb_project: str = "mltrail-serving"
    """The W&B project of the `wandb` sink."""
    wandb_mode: Literal["offline", "online"] = "offline"
    """The W&B mode of the `wandb` sink."""
    wandb_dir: Annotated[str, PATH] = "."
    """Where the `wandb` sink keeps its files."""
    mlflow_uri: Annotated[str, SQLITE_URI] = "sqlite:///mlflow.db"
    """The MLflow tracking URI of the `mlflow` sink."""
    mlflow_experiment: str = "mltrail-serving"
    """The MLflow experiment of the `mlflow` sink."""


class ServeSettingsBase(_Declared):
    """The server's settings; each key also the variable ``MLTRAIL_<KEY>``."""

    text_model: Annotated[str | None, SOURCE] = None
    """A model folder written by `mltrail train text`, or `runs:/<id>/mltrail-model`, or
    `models:/<name>@<alias>` (MLflow)."""
    image_model: Annotated[str | None, SOURCE] = None
    """The CNN, in the same forms."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port to listen on."""
    api_key: str | None = None
    """Bearer token required by predict, feedback, admin and /version (none or empty: open,
    which the server refuses on an address other than loopback). A secret: from the
    environment or the file, never the command line."""
    admin_api_key: str | None = None
    """Bearer token required by /admin/* instead of `api_key` (none: `api_key`). A secret, as
    `api_key`."""
    allow_unauthenticated: bool = False
    """Serve on an address other than loopback without an API key, everything open: only on a
    network where every client is trusted (logged as a warning at start)."""
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    """Larger requests get 413 before they are read."""
    max_batch: int = Field(default=256, gt=0)
    """Most inputs in one request (more: 413)."""
    max_text_chars: int = Field(default=100_000, gt=0)
    """Longest text (longer: 422)."""
    max_header_bytes: int = Field(default=65_536, gt=0)
    """Most bytes of a request line and headers (more: 431, and the connection is closed)."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds from a connection's opening (or a request's first byte) to the end of the
    request's headers; slower: closed (408)."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds from the end of a request's headers to the end of its body; slower: 408 and
    closed."""
    keep_alive_s: int = Field(default=5, gt=0)
    """Seconds an idle keep-alive connection stays open after a response."""
    max_connections: int = Field(default=1000, gt=0)
    """Open connections (or requests in flight) beyond which a request gets 503."""
    graceful_shutdown_s: int = Field(default=30, gt=0)
    """Seconds a stopping server (SIGTERM) gives the requests in flight before closing their
    connections; the telemetry drain (`telemetry.shutdown_timeout_s`) follows. A platform's
    grace period must cover both (deploy/k8s/base/server.yaml)."""
    pointer_file: Annotated[str | None, PATH] = None
    """A JSON file `{"text": ..., "image": ...}`; when it changes the server reloads."""
    alias_poll_s: float = 5.0
    """Seconds between asks of the MLflow registry which version a served
    `models:/<name>@<alias>` names; when it changes, the server loads that version (as a hot
    reload does). 0 turns it off; a folder, `runs:/` or `models:/<name>/<version>` is fixed."""
    image_tag: str | None = None
    """The container image tag, shown by /version and the status page."""
    monitor_dir: Annotated[str, PATH] = "monitoring"
    """Where `mltrail monitor --out` / `mltrail retrain` write their checks: the status page
    shows the decisions in `<monitor_dir>/<task>/decisions.jsonl` (or
    `<monitor_dir>/decisions.jsonl`)."""
    releases_history: Annotated[str | None, PATH] = None
    """The promotions the status page lists (`releases/history.jsonl`, which `mltrail
    promote` writes; default: beside `pointer_file`, else `releases/history.jsonl`)."""
    mlflow_ui_url: str | None = None
    """The MLflow UI the status page links runs to (default: the model's MLflow tracking URI
    when it is http(s); a local `sqlite:` store has no web page, so no link)."""
    log_inputs: bool = False
    """Log raw inputs (texts, pixel arrays) in the server log; off: they are never logged."""
    capture_inputs: float = Field(default=0.0, ge=0, le=1)
    """Share of predictions whose input is kept in the telemetry store (table `inputs`), so
    that the ones given feedback can join the training data (`mltrail retrain`). 0 by
    default: inputs may be personal data; turn it on knowingly."""
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    """Where prediction records go (the keys below)."""

    @field_validator("alias_poll_s")
    @classmethod
    def _poll_not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(
                f"{value} is negative: give the seconds between polls of the registry alias "
                "(e.g. 5), or 0 to stop following it"
            )
        return value

    @field_validator("api_key", "admin_api_key")
    @classmethod
    def _blank_key_is_no_key(cls, value: str | None) -> str | None:
        # `api_key: ""` in a file (or spaces) would otherwise read as a key that opens nothing
        # and compare equal to an empty bearer token.
        return value if value and value.strip() else None


def env_name(model: type[BaseModel], *path: str) -> str:
    """The variable of the field at ``path`` in ``model``: ``MLTRAIL_`` and the path joined
    by ``__``, upper case. A ``KeyError`` for a field that is not declared."""
    fields = model.model_fields
    for i, name in enumerate(path):
        field = fields[name]
        if i + 1 < len(path):
            nested = field.annotation
            assert isinstance(nested, type) and issubclass(nested, BaseModel), path
            fields = nested.model_fields
    return PREFIX + NESTED_DELIMITER.join(path).upper()


@dataclass(frozen=True)
class Variable:
    """One declared variable: its name, where it is declared, what it holds, its default."""

    name: str
    model: type[BaseModel]
    path: tuple[str, ...]
    declared_in: type[BaseModel]
    """The model whose field it is (nested keys: the nested model)."""
    holds: Holds | None
    default: Any

    @property
    def key(self) -> str:
        """The dotted settings key (``telemetry.sinks``)."""
        return ".".join(self.path)

    @property
    def doc(self) -> str:
        """The field's docstring, on one line."""
        return " ".join(_docstrings(self.declared_in).get(self.path[-1], "").split())


def _walk(
    model: type[BaseModel], root: type[BaseModel], path: tuple[str, ...]
) -> Iterator[Variable]:
    for name, field in model.model_fields.items():
        here = (*path, name)
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from _walk(nested, root, here)
            continue
        yield Variable(env_name(root, *here), root, here, model, Holds.of(field), field.default)


@functools.cache
def variables() -> dict[str, Variable]:
    """Every declared variable by name: :class:`Environment`'s, then the server's."""
    found = [*_walk(Environment, Environment, ()), *_walk(ServeSettingsBase, ServeSettingsBase, ())]
    return {v.name: v for v in found}


@functools.cache
def _docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The docstring under each field of ``model``, read from the source when asked (pydantic's
    ``use_attribute_docstrings`` would read it at every import, which costs more than the rest
    of this module)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    found = {}
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            found[field.target.id] = doc.value.value
    return found
