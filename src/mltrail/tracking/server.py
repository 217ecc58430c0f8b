"""``mltrail tracking server``: MLflow's own tracking server, set up for a team.

PostgreSQL as the backend store (the database is created on first use), artifacts stored by
the server itself, in a local folder or in object storage (``s3://bucket/path`` on AWS, MinIO
or any S3-compatible store, with ``s3_endpoint_url`` for the last two; checked reachable before
the server starts): clients upload and download through the server, so they need no shared
disk and no cloud credentials; the server reads its own from the usual AWS variables or files.
Lean settings: no background job runner (which starts 7 worker processes, 2.4 GB), a fixed
number of workers. Every client then needs one setting: ``tracking.mlflow_uri:
http://<host>:5000`` in params.yaml (or ``--tracker http://<host>:5000``). The server is
``mlflow server`` itself; this only builds its command.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mltrail.errors import MltrailError
from mltrail.paths import absolute, is_uri
from mltrail.tracking.artifact_store import S3_ENDPOINT_ENV, check_bucket, split_s3_uri

DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/mlflow"


def artifacts_location(value: str | Path) -> str | Path:
    """Where the server keeps artifacts: a URI (``s3://bucket/path``, ``gs://...``) as given,
    a local folder as an absolute path (a ``Path`` of a URI would be a folder named ``s3:``)."""
    if isinstance(value, str) and is_uri(value):
        return value
    return absolute(value).resolve()


@dataclass(frozen=True)
class TrackingServer:
    backend_store_uri: str = DEFAULT_STORE
    artifacts_destination: str | Path = Path("mlartifacts")
    """A local folder, or a URI MLflow stores artifacts at (``s3://bucket/path``)."""
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    allowed_hosts: str | None = None
    """Host headers the server accepts (MLflow answers 403 to others); default: its own."""
    s3_endpoint_url: str | None = None
    """An S3-compatible store's endpoint (MinIO, moto); None: AWS itself, or whatever
    $MLFLOW_S3_ENDPOINT_URL already says."""

    def __post_init__(self) -> None:
        location = artifacts_location(self.artifacts_destination)
        object.__setattr__(self, "artifacts_destination", location)
        if str(location).startswith("s3://"):
            split_s3_uri(str(location))  # s3:///path (no bucket) is refused here, not by MLflow
        elif self.s3_endpoint_url:
            raise MltrailError(
                f"an S3 endpoint ({self.s3_endpoint_url}) was given, but the artifacts go to "
                f"{location}, not to an s3:// bucket",
                hint="give --artifacts s3://BUCKET/PATH, or leave out --s3-endpoint-url",
            )

    def command(self) -> tuple[list[str], dict[str, str]]:
        mlflow = str(Path(sys.executable).parent / "mlflow")
        argv = [
            mlflow,
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_destination),
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
        if self.s3_endpoint_url:  # read by MLflow's S3 artifact repository (boto3 client)
            env[S3_ENDPOINT_ENV] = self.s3_endpoint_url
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
    """Check where artifacts go (the bucket reachable, else the folder made) and create the
    database if needed, then become ``mlflow server`` (signals reach it)."""
    argv, env = server.command()
    destination = server.artifacts_destination
    if isinstance(destination, Path):
        destination.mkdir(parents=True, exist_ok=True)
    elif destination.startswith("s3://"):
        # Checked first: MLflow would start anyway, then answer each client's upload with a
        # 500; and a start refused for its bucket leaves no new database behind.
        check_bucket(destination, env.get(S3_ENDPOINT_ENV) or os.environ.get(S3_ENDPOINT_ENV))
    ensure_database(server.backend_store_uri)
    os.execve(argv[0], argv, os.environ | env)
