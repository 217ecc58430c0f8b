"""The team's tracking server with its artifacts in S3-compatible object storage: moto's real
S3 server on loopback stands in for MinIO or AWS S3 (neither is installable here)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mltrail.errors import MltrailError
from mltrail.tracking.server import TrackingServer
from tests.conftest import POSTGRES_ADMIN, REPO, S3Bucket, free_port, fresh_database
from tests.tracking.test_team_server import TeamServer

BIN = Path(sys.executable).parent
MODEL_FILES = ("manifest.json", "model.npz", "reference.npz")


class S3TeamServer(TeamServer):
    """``mltrail tracking server --artifacts s3://BUCKET/mlflow --s3-endpoint-url ...``."""

    def __init__(self, workdir: Path, store: str, bucket: S3Bucket) -> None:
        super().__init__(workdir, store)
        self.bucket = bucket

    def command(self) -> list[str]:
        return [
            str(BIN / "mltrail"),
            "tracking",
            "server",
            "--backend-store-uri",
            self.store,
            "--artifacts",
            f"{self.bucket.uri}/mlflow",
            "--s3-endpoint-url",
            self.bucket.endpoint,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]


@pytest.fixture
def s3_team_server(tmp_path: Path, s3_bucket: S3Bucket) -> Iterator[S3TeamServer]:
    with fresh_database("mltrail_mlflow_s3", create=False) as store:
        server = S3TeamServer(tmp_path, store, s3_bucket)
        server.start()  # inherits the dummy AWS keys: the server's own credentials
        yield server
        server.stop()


def _without_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients from here on (training, loading) have no AWS keys and no endpoint."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)


def test_a_uri_stays_a_uri_and_a_folder_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv, env = TrackingServer(
        artifacts_destination="s3://team-bucket/mlflow", s3_endpoint_url="http://minio:9000"
    ).command()
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://team-bucket/mlflow"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    argv, env = TrackingServer(artifacts_destination="gs://b/p").command()
    assert argv[argv.index("--artifacts-destination") + 1] == "gs://b/p"
    assert "MLFLOW_S3_ENDPOINT_URL" not in env
    argv, _ = TrackingServer(artifacts_destination="rel/artifacts").command()
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "rel" / "artifacts")
    with pytest.raises(MltrailError, match="not to an s3:// bucket"):
        TrackingServer(artifacts_destination="rel", s3_endpoint_url="http://minio:9000")
    with pytest.raises(MltrailError, match="not an S3 location"):
        TrackingServer(artifacts_destination="s3:///no-bucket")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_tracked_model_lands_in_the_bucket_and_loads_back_through_the_server(
    s3_team_server: S3TeamServer,
    s3_bucket: S3Bucket,
    text_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from mltrail.models.loading import MLFLOW_ARTIFACT, load

    _without_aws_credentials(monkeypatch)
    out = tmp_path / "model"
    done = subprocess.run(
        [
            str(BIN / "mltrail"),
            "train",
            "text",
            "--tracker",
            s3_team_server.uri,
            "--data",
            str(text_data),
            "--out",
            str(out),
            "--params",
            str(REPO / "params.yaml"),
            "--set",
            f"tracking.journal_dir={tmp_path / 'journal'}",
            "--set",
            "tracking.wait=true",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    client = MlflowClient(s3_team_server.uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: no s3:// to clients
    keys = s3_bucket.keys("mlflow/")
    prefix = f"mlflow/{run.info.experiment_id}/{run.info.run_id}/artifacts/{MLFLOW_ARTIFACT}/"
    for name in MODEL_FILES:  # each file of the model folder is an object, byte for byte
        assert prefix + name in keys, keys
        body = s3_bucket.client().get_object(Bucket=s3_bucket.name, Key=prefix + name)["Body"]
        assert body.read() == (out / name).read_bytes()
    assert any(k.endswith("/MLmodel") for k in keys), keys  # MLflow's own logged model
    assert not (tmp_path / "s3:").exists()  # not a local folder named after the scheme

    monkeypatch.setenv("MLFLOW_TRACKING_URI", s3_team_server.uri)
    texts = ["a wonderful, moving film", "dull and far too long"]
    model = load(f"runs:/{run.info.run_id}/{MLFLOW_ARTIFACT}", "text")  # sha256-verified
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (2, len(model.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    # MLflow's sklearn copy predicts class indices: the same as mltrail's arrays say.
    assert list(pyfunc.predict(texts)) == list(probabilities.argmax(axis=1))


def _start(store: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``mltrail tracking server`` that must refuse to start (it would not return otherwise)."""
    return subprocess.run(
        [
            str(BIN / "mltrail"),
            "tracking",
            "server",
            "--backend-store-uri",
            store,
            "--port",
            str(free_port()),
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _database_exists(dsn: str) -> bool:
    import psycopg

    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return found.fetchone() is not None


@pytest.mark.postgres
@pytest.mark.parametrize("wrong", ["no such bucket", "nothing at the endpoint", "no keys"])
def test_an_unreachable_bucket_stops_the_server_before_it_starts(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: str
) -> None:
    bucket, endpoint = s3_bucket.name, s3_bucket.endpoint
    if wrong == "no such bucket":
        bucket = "mltrail-never-created"
    elif wrong == "nothing at the endpoint":
        endpoint = f"http://127.0.0.1:{free_port()}"
    else:
        _without_aws_credentials(monkeypatch)
    artifacts = ["--artifacts", f"s3://{bucket}/mlflow", "--s3-endpoint-url", endpoint]
    with fresh_database("mltrail_refused", create=False) as store:
        done = _start(store, *artifacts, cwd=tmp_path)
        assert not _database_exists(store)  # refused before anything was created
    assert done.returncode != 0
    said = done.stderr
    assert f"bucket '{bucket}' at {endpoint}" in said, said
    expected = {
        "no such bucket": "does not exist",
        "nothing at the endpoint": "cannot reach",
        "no keys": "no AWS credentials",
    }[wrong]
    assert expected in said and "hint:" in said, said
    assert "Traceback" not in said, said
    assert not (tmp_path / "s3:").exists()
