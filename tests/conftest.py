from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mltrail.config import MIRROR_ENV, Params, load_params
from mltrail.paths import resolve_environment
from mltrail.telemetry import TelemetryStore, open_store, store_kinds

REPO = Path(__file__).resolve().parents[1]
# As the mltrail command does first: relative MLTRAIL_* paths name folders relative to where
# pytest was started, also for the tests that change directory or start processes elsewhere.
resolve_environment()
PARAMS = REPO / "params.yaml"
POSTGRES_ADMIN = os.environ.get(
    "MLTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a real service carries its marker (``-m "not postgres"``, ``-m "not
    sshd"``, ``-m "not s3"`` leave them out), by the fixture it asks for: a new test is marked
    by using it."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        store = callspec.params.get("uri") if callspec is not None else None
        if "postgres_dsn" in names or store == "postgres":
            item.add_marker(pytest.mark.postgres)
        if "ssh_host" in names:
            item.add_marker(pytest.mark.sshd)
        if names & {"s3_bucket", "moto_s3"}:
            item.add_marker(pytest.mark.s3)


STORE_URIS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": lambda request, tmp_path: str(tmp_path / "telemetry.db"),
    "postgres": lambda request, tmp_path: str(request.getfixturevalue("postgres_dsn")),
}
"""A fresh, empty telemetry store of each registered kind: a new store is tested by every
test that asks for ``uri`` or ``store`` once it has an entry here."""


@pytest.fixture(params=[kind.name for kind in store_kinds()])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each kind (named ``uri``: the PostgreSQL one is marked ``postgres``)."""
    make = STORE_URIS.get(request.param)
    assert make is not None, f"the registered store {request.param} has no test URI here"
    return make(request, tmp_path)


@pytest.fixture
def store(uri: str) -> Iterator[TelemetryStore]:
    with closing(open_store(uri)) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _restore_mlflow_tracking_uri() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` in a test (to read runs back) is process-global and beats
    $MLFLOW_TRACKING_URI in every later test: unset it again afterwards (private, but the
    only handle: mlflow has no public way to unset it)."""
    import sys

    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None:
        utils._tracking_uri = None  # type: ignore[attr-defined]


def copy_repository(root: Path) -> Path:
    """The files this repository tracks, copied into ``root`` as a fresh git repository."""
    from benchmarks.common import copy_project

    copied: Path = copy_project(REPO, root)
    return copied


def set_params(project: Path, **sections: dict[str, object]) -> None:
    """Update sections of ``project``'s params.yaml."""
    from benchmarks.common import set_params as update

    update(project, sections)


def train_text_args(tracker: str, data: Path, out: Path, journal: Path, *sets: str) -> list[str]:
    """``mltrail train text`` as the team tests run it: tracked runs whose journal is ``journal``
    and that wait for their export (the run must be in the tracker when the process exits);
    ``sets``: more ``--set`` overrides."""
    return [
        "train", "text", "--tracker", tracker, "--data", str(data), "--out", str(out),
        "--params", str(PARAMS), "--set", f"tracking.journal_dir={journal}",
        "--set", "tracking.wait=true", *(a for s in sets for a in ("--set", s)),
    ]  # fmt: skip


def wait_until_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90
) -> None:
    """Wait for ``url``/ready to answer 200; fail with the server's log if it exits or times out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not become ready:\n{log.read_text()}")
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fresh_database(prefix: str = "mltrail_test", create: bool = True) -> Iterator[str]:
    """The DSN of a database of its own on the machine's PostgreSQL (127.0.0.1:5432, trust
    auth; $MLTRAIL_TEST_POSTGRES for another server), dropped afterwards. ``create=False``:
    only the name is reserved (the code under test creates it)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if create:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (see ``fresh_database``)."""
    pytest.importorskip("psycopg")
    with fresh_database() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server (``moto_server``: the S3 HTTP API, a stand-in for MinIO or AWS S3)
    on loopback for the whole session; its endpoint URL. Tests take ``s3_bucket``."""
    pytest.importorskip("moto.server")
    pytest.importorskip("boto3")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for_moto(endpoint, proc, log)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for_moto(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto_server did not answer:\n{log.read_text()}")
        time.sleep(0.2)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any keys; dummy ones, so that nothing can reach a real AWS account."""
AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
)


@dataclass(frozen=True)
class S3Bucket:
    """An empty bucket of its own on the session's moto S3 server."""

    endpoint: str
    name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.name}"

    def client(self) -> Any:
        """A boto3 client with the dummy keys given here, not read from the environment: a
        test may take them away to show that a client of the tracking server needs none."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object's key under ``prefix``, sorted."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture
def s3_bucket(moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket on moto's S3 server, created with boto3; dummy AWS credentials in the
    environment (inherited by the processes a test starts), the developer's own AWS settings
    and files out of reach."""
    for var, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # Without keys, botocore would otherwise ask the EC2 metadata address (seconds of timeouts).
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in AWS_UNSET:
        monkeypatch.delenv(var, raising=False)
    bucket = S3Bucket(moto_s3, f"mltrail-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket


def shared_datasets() -> Path:
    """The real datasets: $MLTRAIL_DATA_MIRROR, else ../shared/datasets beside the repo."""
    folder = Path(os.environ.get(MIRROR_ENV) or REPO.parent / "shared" / "datasets")
    if not (folder / "imdb_reviews.csv.gz").is_file():
        raise RuntimeError(
            f"the real datasets are not in {folder}: set {MIRROR_ENV} to the folder holding "
            "imdb_reviews.csv.gz, 20newsgroups_bydate.csv.gz and cifar-10-python.tar.gz"
        )
    return folder


@pytest.fixture
def no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of source resolution must not see the developer's mirror variable."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture
def make_params(no_mirror: None) -> Callable[..., Params]:
    """The repository's params.yaml with ``--set``-style overrides."""

    def make(*overrides: str) -> Params:
        return load_params(PARAMS, overrides)

    return make


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder: MLflow's SQLite store, W&B's files and journals land there."""
    monkeypatch.chdir(tmp_path)
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    return tmp_path


@pytest.fixture
def text_data(tmp_path: Path, make_params: Callable[..., Params]) -> Path:
    """A small prepared text dataset (the output of prepare_data_text)."""
    import mltrail.stages.prepare_text as prepare_text
    from tests.builders import text_rows, write_csv

    csv = write_csv(tmp_path / "reviews.csv", text_rows(60))
    out = tmp_path / "prepared_text"
    prepare_text.run(make_params(f"text.source.path={csv}"), out, tmp_path, progress=False)
    return out


@pytest.fixture
def cifar_data(tmp_path: Path, make_params: Callable[..., Params]) -> Path:
    """A small prepared CIFAR-10 dataset (the output of prepare_cifar10)."""
    import mltrail.stages.prepare_cifar10 as prepare_cifar10
    from mltrail.data.cifar10 import read_cifar10_archive
    from mltrail.data.sources import FetchedFile
    from tests.builders import write_cifar_archive

    archive = write_cifar_archive(tmp_path / "c.tar.gz", per_class_per_batch=4, test_per_class=4)
    params = make_params()
    prepared = prepare_cifar10.prepare_cifar10(
        read_cifar10_archive(archive), params.cifar10_section()
    )
    out = tmp_path / "prepared_cifar10"
    source = FetchedFile(archive, "0" * 64, "path", verified=False)
    prepare_cifar10.write_prepared_cifar10(prepared, out, source, params.cifar10_section())
    return out
