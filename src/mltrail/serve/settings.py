"""Server settings: the keys declared in :class:`mltrail.settings.ServeSettingsBase`, read by
pydantic-settings from these sources, the first that sets a key wins:

1. the command line (``mltrail serve --text-model/--image-model/--host/--port``; the keyword
   arguments of :func:`load_settings`);
2. ``MLTRAIL_<KEY>`` variables, nested keys joined by ``__`` (``MLTRAIL_TELEMETRY__SINKS``);
3. ``MLTRAIL_TELEMETRY_DSN``, as ``telemetry.postgres_dsn``;
4. the YAML file (``--settings``, or ``$MLTRAIL_SERVE_SETTINGS``);
5. the defaults.

That is file < environment < command line. Secrets (the API key, a DSN with a password) come
from the environment or the file, never from a command line (it would show in ``ps``). Every
local path is then made absolute against the working directory (:func:`resolve_settings`).
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from mltrail.errors import MltrailError, ParamsError
from mltrail.paths import resolve_fields
from mltrail.settings import NESTED_DELIMITER, PREFIX, Environment, ServeSettingsBase

_FILE: ContextVar[Path | None] = ContextVar("mltrail_serve_settings_file", default=None)
"""The settings file of the :class:`ServeSettings` being built (its sources are built by a
classmethod, which cannot see the instance's arguments)."""


class ServeSettings(BaseSettings, ServeSettingsBase):
    """The server's settings, from the command line, the environment and a YAML file."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_ignore_empty=True,  # MLTRAIL_X= (empty) is unset, as for every other variable
        extra="forbid",
    )

    def __init__(self, _settings_file: Path | None = None, **values: Any) -> None:
        """``_settings_file``: the YAML file (default: ``$MLTRAIL_SERVE_SETTINGS``, if set);
        ``values``: the command line's."""
        token = _FILE.set(_settings_file)
        try:
            super().__init__(**values)
        finally:
            _FILE.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The sources, highest precedence first (no .env file, no secrets folder)."""
        file = _FILE.get() or _path(Environment.read().serve_settings)
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, _telemetry_dsn()),
            InitSettingsSource(settings_cls, _read_file(file)),
        )


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _telemetry_dsn() -> dict[str, Any]:
    """``$MLTRAIL_TELEMETRY_DSN`` (it may hold a password: not in a file) as the PostgreSQL
    store's DSN."""
    dsn = Environment.read().telemetry_dsn
    return {"telemetry": {"postgres_dsn": dsn}} if dsn else {}


def _read_file(path: Path | None) -> dict[str, Any]:
    """The settings file: a YAML mapping of keys, as in docs/serving.md."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"cannot read server settings {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path}: expected a mapping of settings")
    return loaded


def load_settings(path: Path | None = None, **overrides: object) -> ServeSettings:
    """Settings from ``path`` (or ``$MLTRAIL_SERVE_SETTINGS``), the environment and
    ``overrides`` (None: not given), with local paths made absolute."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return resolve_settings(ServeSettings(path, **given))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ParamsError(
            f"invalid server settings: {problems}",
            hint=f"valid keys: {', '.join(ServeSettings.model_fields)}",
        ) from None
    except SettingsError as exc:  # a variable that is not valid JSON where JSON is needed
        raise ParamsError(
            f"invalid server settings: {exc}",
            hint=f"a list or a section in a variable is JSON: {PREFIX}TELEMETRY"
            f"{NESTED_DELIMITER}SINKS='[\"sqlite\"]'",
        ) from None


def resolve_settings(settings: ServeSettings, base: Path | None = None) -> ServeSettings:
    """Local paths in ``settings`` made absolute against ``base`` (the working directory): the
    model folders, the pointer file and the telemetry files (the fields declared to hold one;
    see mltrail.paths)."""
    return resolve_fields(settings, base)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1).
    Any other name, and ``""`` or ``0.0.0.0`` (every interface), is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: ServeSettings) -> str | None:
    """Refuse to serve an address other than loopback without an API key, unless
    ``allow_unauthenticated``; then, the warning to log at start (None: nothing open)."""
    if settings.api_key is not None or is_loopback(settings.host):
        return None
    if not settings.allow_unauthenticated:
        raise MltrailError(
            f"refusing to serve on {settings.host} without an API key: /predict/*, /feedback "
            "and /admin/reload would be open to anyone who can reach it",
            hint="set MLTRAIL_API_KEY (and MLTRAIL_ADMIN_API_KEY for /admin/*), serve on "
            "127.0.0.1, or, on a network where every client is trusted, pass "
            "--allow-unauthenticated (MLTRAIL_ALLOW_UNAUTHENTICATED=1); see docs/security.md",
        )
    return (
        f"serving on {settings.host} WITHOUT AN API KEY (allow_unauthenticated): /predict/*, "
        "/feedback, /version and /admin/reload are open to anyone who can reach this address"
    )
