"""``mltrail serve``: models over HTTP (FastAPI + uvicorn), with telemetry and /metrics."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import Args, set_command
from mltrail.errors import MltrailError

NAME = "serve"


@dataclass(frozen=True, kw_only=True)
class ServeArgs(Args):
    settings: Path | None
    text_model: str | None
    image_model: str | None
    host: str | None
    port: int | None
    allow_unauthenticated: bool | None


def cmd_serve(args: ServeArgs) -> int:
    import uvicorn

    from mltrail.serve.app import create_app
    from mltrail.serve.connections import ConnectionLimits, bounded_protocol
    from mltrail.serve.settings import load_settings

    settings = load_settings(
        args.settings,
        text_model=args.text_model,
        image_model=args.image_model,
        host=args.host,
        port=args.port,
        allow_unauthenticated=args.allow_unauthenticated,
    )
    pointer = Path(settings.pointer_file) if settings.pointer_file else None
    if not settings.text_model and not settings.image_model and not (pointer and pointer.is_file()):
        raise MltrailError(
            "no model to serve",
            hint="give --text-model and/or --image-model (a models/<task>/<tracker> folder), "
            "or a pointer_file that names them (mltrail promote writes one)",
        )
    app = create_app(settings)  # refuses an exposed address without a key, before binding it
    limits = ConnectionLimits(
        settings.header_timeout_s, settings.body_timeout_s, settings.max_header_bytes
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        http=bounded_protocol(limits),
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        access_log=False,  # per-request lines cost throughput; /metrics and telemetry count them
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        log_level="info",
    )
    return 0


HELP = "serve models over HTTP (FastAPI + uvicorn), with telemetry and /metrics"
DESCRIPTION = """Settings come from --settings (YAML; or $MLTRAIL_SERVE_SETTINGS), the
environment (MLTRAIL_TEXT_MODEL, MLTRAIL_IMAGE_MODEL, MLTRAIL_API_KEY,
MLTRAIL_ADMIN_API_KEY, MLTRAIL_IMAGE_TAG, MLTRAIL_POINTER_FILE), then these options. An
address other than loopback needs an API key, or --allow-unauthenticated (docs/security.md)."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, help="server settings file (YAML)")
    parser.add_argument("--text-model", help="model folder, runs:/... or models:/name@alias")
    parser.add_argument("--image-model", help="model folder, runs:/... or models:/name@alias")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000; 80 in the container)")
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,  # not given: the settings decide
        help="serve an address other than loopback without an API key, everything open "
        "(a trusted network only)",
    )
    set_command(parser, ServeArgs, cmd_serve)
