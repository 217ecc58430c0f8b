"""``mltrail tracking server``: MLflow's own tracking server, set up for a team.

PostgreSQL as the backend store (the database is created on first use), artifacts stored by
the server itself under one folder (clients upload and download through it: no shared disk,
no cloud credentials on the clients), and lean settings: no background job runner (which
starts 7 worker processes, 2.4 GB), a fixed number of workers. Every client then needs one
setting: ``tracking.mlflow_uri: http://<host>:5000`` in params.yaml (or ``--tracker
http://<host>:5000``). The server is ``mlflow server`` itself; this only builds its command.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mltrail.errors import MltrailError

DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/mlflow"


@dataclass(frozen=True)
class TrackingServer:
    backend_store_uri: str = DEFAULT_STORE
    artifacts_destination: Path = Path("mlartifacts")
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    allowed_hosts: str | None = None
    """Host headers the server accepts (MLflow answers 403 to others); default: its own."""

    def command(self) -> tuple[list[str], dict[str, str]]:
        mlflow = str(Path(sys.executable).parent / "mlflow")
        argv = [
            mlflow,
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_destination.resolve()),
            "--serve-artifacts",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.allowed_hosts:
            argv += ["--allowed-hosts", self.allowed_hosts]
        env = {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        return argv, env


def ensure_database(store_uri: str) -> bool:
    """Create the PostgreSQL database of ``store_uri`` if it does not exist; True if created."""
    if not store_uri.startswith(("postgresql://", "postgresql+psycopg://")):
        return False
    import psycopg

    parts = urlsplit(store_uri.replace("postgresql+psycopg://", "postgresql://"))
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise MltrailError(f"database name {name!r} in {store_uri}: letters, digits and _ only")
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone():
                return False
            conn.execute(f'CREATE DATABASE "{name}"')
            return True
    except psycopg.OperationalError as exc:
        raise MltrailError(
            f"cannot reach PostgreSQL for {parts.hostname}:{parts.port or 5432}: {exc}",
            hint="start PostgreSQL, or give --backend-store-uri postgresql://user@host:port/db",
        ) from None


def run(server: TrackingServer) -> None:
    """Create the database if needed, then become ``mlflow server`` (signals reach it)."""
    ensure_database(server.backend_store_uri)
    server.artifacts_destination.mkdir(parents=True, exist_ok=True)
    argv, env = server.command()
    os.execve(argv[0], argv, os.environ | env)
