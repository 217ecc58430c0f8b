"""``mltrail tracking sync|server``: export runs a tracker missed, run a team's MLflow
server."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import Args, ParamsArgs, params_parser, set_command

NAME = "tracking"


@dataclass(frozen=True, kw_only=True)
class SyncArgs(ParamsArgs):
    pass


@dataclass(frozen=True, kw_only=True)
class ServerArgs(Args):
    backend_store_uri: str
    artifacts: str
    s3_endpoint_url: str | None
    host: str
    port: int
    workers: int
    allowed_hosts: str | None
    print: bool


SYNC_PENDING = 1
"""``mltrail tracking sync`` exit status when a run is still pending (a backend is down)."""
SYNC_SKIPPED = 3
"""... when a run was skipped because its journal is corrupt (the others were exported)."""


def cmd_tracking_sync(args: SyncArgs) -> int:
    import sys

    from mltrail.tracking.export import CORRUPT, sync

    journal_dir = Path(args.load_params().tracking.journal_dir)
    results = sync(journal_dir) if journal_dir.is_dir() else {}
    skipped = {r: s[CORRUPT] for r, s in results.items() if CORRUPT in s}
    for run_id, states in results.items():
        if run_id not in skipped:
            print(f"{run_id}: " + ", ".join(f"{b} {s}" for b, s in states.items()))
    for run_id, why in skipped.items():
        print(f"{run_id}: skipped: {why}", file=sys.stderr)
    pending = [r for r, s in results.items() if "pending" in s.values()]
    print(
        f"{len(results) - len(skipped)} run(s) to export, {len(pending)} still pending, "
        f"{len(skipped)} skipped (corrupt journal)"
    )
    if skipped:
        return SYNC_SKIPPED
    return SYNC_PENDING if pending else 0


def cmd_tracking_server(args: ServerArgs) -> int:
    import shlex

    from mltrail.tracking.server import TrackingServer, run

    server = TrackingServer(
        backend_store_uri=args.backend_store_uri,
        artifacts_destination=args.artifacts,
        host=args.host,
        port=args.port,
        workers=args.workers,
        allowed_hosts=args.allowed_hosts,
        s3_endpoint_url=args.s3_endpoint_url,
    )
    if args.print:
        argv, env = server.command()
        print(" ".join([*(f"{k}={v}" for k, v in env.items()), *map(shlex.quote, argv)]))
        return 0
    run(server)
    return 0  # not reached: run() becomes the server


HELP = "tracking journal tools"


def register(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    sync = what.add_parser(
        "sync",
        parents=[params_parser()],
        help="export runs whose export did not finish (backend down)",
        description=f"""Export every run a backend does not have yet. A run whose journal has a
        line that is not a record is skipped and named (file and line), the others exported.
        Exit status: 0 all exported, {SYNC_PENDING} some still pending (a backend is down),
        {SYNC_SKIPPED} some skipped (corrupt journal).""",
    )
    set_command(sync, SyncArgs, cmd_tracking_sync)
    server = what.add_parser(
        "server",
        help="run a team's MLflow tracking server (PostgreSQL store, served artifacts)",
        description="""Creates the PostgreSQL database if needed, then runs `mlflow server` with it
        as the backend store, artifacts served from --artifacts (a folder, or s3://BUCKET/PATH,
        checked reachable first), no job runner. Clients point at it with one setting:
        tracking.mlflow_uri: http://HOST:PORT; they upload and download artifacts through it and
        need no cloud credentials. The server reads its own from the environment
        (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / ~/.aws/credentials).""",
    )
    server.add_argument(
        "--backend-store-uri", default="postgresql://postgres@127.0.0.1:5432/mlflow"
    )
    # A string: Path("s3://bucket/x") would be the local folder s3:/bucket/x.
    server.add_argument(
        "--artifacts",
        default="mlartifacts",
        help="where artifacts are stored: a folder, or s3://BUCKET/PATH (default: mlartifacts)",
    )
    server.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="an S3-compatible store (MinIO, moto) for s3:// artifacts, passed to the server as "
        "$MLFLOW_S3_ENDPOINT_URL (default: AWS S3, or that variable)",
    )
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=int, default=2)
    server.add_argument(
        "--allowed-hosts", help="Host headers to accept (MLflow's default: its own)"
    )
    server.add_argument(
        "--print", action="store_true", help="print the command instead of running it"
    )
    set_command(server, ServerArgs, cmd_tracking_server)
