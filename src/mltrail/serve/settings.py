"""Server settings: a YAML file (``--settings`` or ``$MLTRAIL_SERVE_SETTINGS``), then the
environment, then the command line. Secrets (the API key) come from the environment or the
file, never from a command line (it would show in ``ps``)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mltrail.errors import ParamsError
from mltrail.paths import absolute, absolute_source, absolute_sqlite_uri
from mltrail.telemetry.settings import TelemetrySettings, store_from_env


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServeSettings(_Strict):
    text_model: str | None = None
    """A model folder written by ``mltrail train text``, or ``runs:/<id>/mltrail-model``,
    or ``models:/<name>@<alias>`` (MLflow)."""
    image_model: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: str | None = None
    """Bearer token required by predict, feedback and admin; from ``$MLTRAIL_API_KEY``."""
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    """Larger requests get 413 before they are read."""
    max_batch: int = Field(default=256, gt=0)
    max_text_chars: int = Field(default=100_000, gt=0)
    pointer_file: str | None = None
    """A JSON file ``{"text": ..., "image": ...}``; when it changes the server reloads."""
    image_tag: str | None = None
    """The container image tag, shown by /version; from ``$MLTRAIL_IMAGE_TAG``."""
    log_inputs: bool = False
    """Log raw inputs (texts, pixel arrays) in the server log; off: they are never logged."""
    capture_inputs: float = Field(default=0.0, ge=0, le=1)
    """Share of predictions whose input is kept in the telemetry store (table ``inputs``),
    so that the ones given feedback can join the training data (``mltrail retrain``). 0 by
    default: inputs may be personal data; turn it on knowingly. ``$MLTRAIL_CAPTURE_INPUTS``."""
    telemetry: TelemetrySettings = TelemetrySettings()


ENV = {
    "MLTRAIL_TEXT_MODEL": "text_model",
    "MLTRAIL_IMAGE_MODEL": "image_model",
    "MLTRAIL_API_KEY": "api_key",
    "MLTRAIL_IMAGE_TAG": "image_tag",
    "MLTRAIL_POINTER_FILE": "pointer_file",
    "MLTRAIL_CAPTURE_INPUTS": "capture_inputs",
}


def load_settings(path: Path | None = None, **overrides: object) -> ServeSettings:
    """Settings from ``path`` (or ``$MLTRAIL_SERVE_SETTINGS``), the environment, ``overrides``."""
    values: dict[str, object] = {}
    path = path or (Path(p) if (p := os.environ.get("MLTRAIL_SERVE_SETTINGS")) else None)
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ParamsError(f"cannot read server settings {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ParamsError(f"{path}: expected a mapping of settings")
        values |= loaded
    for var, key in ENV.items():
        if os.environ.get(var):
            values[key] = os.environ[var]
    if dsn := store_from_env():  # may hold a password: not in a file
        telemetry = dict(values.get("telemetry") or {})  # type: ignore[call-overload]
        telemetry["postgres_dsn"] = dsn
        values["telemetry"] = telemetry
    values |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return resolve_settings(ServeSettings.model_validate(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ParamsError(
            f"invalid server settings: {problems}",
            hint=f"valid keys: {', '.join(ServeSettings.model_fields)}",
        ) from None


def resolve_settings(settings: ServeSettings, base: Path | None = None) -> ServeSettings:
    """Local paths in ``settings`` made absolute against ``base`` (the working directory): the
    model folders, the pointer file and the telemetry files (see mltrail.paths)."""
    base = base or Path.cwd()
    t = settings.telemetry

    def source(value: str | None) -> str | None:
        return None if value is None else absolute_source(value, base)

    telemetry = t.model_copy(update={
        "sqlite_path": str(absolute(t.sqlite_path, base)),
        "spill_dir": str(absolute(t.spill_dir, base)),
        "wandb_dir": str(absolute(t.wandb_dir, base)),
        "mlflow_uri": absolute_sqlite_uri(t.mlflow_uri, base),
    })  # fmt: skip
    return settings.model_copy(update={
        "text_model": source(settings.text_model),
        "image_model": source(settings.image_model),
        "pointer_file": None if settings.pointer_file is None
        else str(absolute(settings.pointer_file, base)),
        "telemetry": telemetry,
    })  # fmt: skip
