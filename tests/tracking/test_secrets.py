"""A tracker URI's password reaches no record: not the stage or run name, the model folder,
the manifest (what /version serves), the model version (every answer, every telemetry row),
the journal, the export states or the logs. The exporter, `tracking sync` and `promote` still
connect, with the credentials from the environment. Against MLflow on the real PostgreSQL
(trust auth on 127.0.0.1: a password in the URI is accepted and ignored)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mltrail.config import TrackingParams
from mltrail.contracts.manifest import Manifest
from mltrail.contracts.secrets import redact_spec, redact_uri, without_secrets
from mltrail.contracts.tasks import train_stage
from mltrail.tracking.registry import connect_uri, hide, parse
from tests.conftest import PARAMS, fresh_database

PASSWORD = "Pw-9f3c1e-leaks"
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql+psycopg://user:PW@host/db", "postgresql+psycopg://user:***@host/db"),
        ("postgresql://user:PW@host:5432/db?sslmode=require&password=PW",
         "postgresql://user:***@host:5432/db?sslmode=require&password=***"),
        ("https://h:5000/?token=t0k&x=1", "https://h:5000/?token=***&x=1"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("mlflow", "mlflow"),
    ],
)  # fmt: skip
def test_redact_uri_keeps_the_user_and_hides_the_secrets(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    assert redact_uri(shown) == shown


def test_names_and_targets_never_hold_the_password(tmp_path: Path) -> None:
    spec = f"postgresql+psycopg://user:{PASSWORD}@host/db,wandb"
    assert redact_spec(spec) == "postgresql+psycopg://user:***@host/db,wandb"
    assert train_stage("text", spec) == "train_text_postgresql-psycopg-user-host-db_wandb"
    settings = TrackingParams.model_validate(
        {"mlflow_uri": f"postgresql://u:{PASSWORD}@h/db", "journal_dir": str(tmp_path)}
    )
    assert parse("mlflow", settings)[0].target == "postgresql://u:***@h/db"
    assert parse(spec, settings)[0].target == "postgresql+psycopg://user:***@host/db"


def test_the_real_uri_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = "postgresql+psycopg://user:***@host/db?password=***"
    real = f"postgresql+psycopg://user:{PASSWORD}@host/db?password={PASSWORD}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Nothing given: the URI without its secrets (libpq completes it: PGPASSWORD, ~/.pgpass).
    assert connect_uri(shown) == without_secrets(real) == "postgresql+psycopg://user@host/db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://other:x@host/db")
    assert connect_uri(shown) == "postgresql+psycopg://user@host/db"  # another URI: not used
    monkeypatch.setenv("MLFLOW_TRACKING_URI", real)
    assert connect_uri(shown) == real
    assert hide(f"could not connect to {real}", shown) == f"could not connect to {shown}"


@pytest.fixture
def secret_uri() -> Iterator[str]:
    """MLflow's store on a fresh PostgreSQL database, through a URI holding a password."""
    pytest.importorskip("psycopg")
    with fresh_database("mltrail_secret") as dsn:
        rest = dsn.split("://", 1)[1]
        user, host = rest.split("@", 1)
        yield f"postgresql+psycopg://{user}:{PASSWORD}@{host}"


def _files_holding(folder: Path, text: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.postgres
def test_training_with_a_password_in_the_tracker_uri_leaks_it_nowhere(
    secret_uri: str, text_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    journal = tmp_path / "journal"
    out = tmp_path / "model"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [str(BIN / "mltrail"), "train", "text", "--tracker", secret_uri, "--data", str(text_data),
         "--out", str(out), "--params", str(PARAMS), "--set", f"tracking.journal_dir={journal}",
         "--set", "tracking.wait=true", "--set", "tracking.retry_for_s=0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr  # the training's log

    manifest = Manifest.read(out)
    shown = redact_uri(secret_uri)
    assert manifest.tracking.backends == {"mlflow": shown}
    assert PASSWORD not in json.dumps(manifest.to_json())  # what /version serves
    assert PASSWORD not in manifest.model_version and PASSWORD not in manifest.stage
    assert manifest.stage == train_stage("text", secret_uri)
    # The journal, the export state and the exporter's log: the run was exported, and none
    # of them names the password.
    (run_dir,) = [p for p in journal.iterdir() if p.is_dir()]
    state = json.loads((run_dir / "export-mlflow.json").read_text())
    assert state["status"] == "done" and state["tracking_uri"] == shown
    assert (run_dir / "export.log").is_file()
    assert _files_holding(journal, PASSWORD) == [] and _files_holding(out, PASSWORD) == []
    client = MlflowClient(secret_uri)
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == manifest.stage

    # Promotion registers the run, connecting with the URI given in the environment; the
    # release history records it redacted.
    from mltrail.config import load_params
    from mltrail.release.promote import promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    releases = tmp_path / "releases"
    params = load_params(PARAMS, [f"retrain.releases_dir={releases}",
                                  f"retrain.pointer_file={releases}/serving.json"])  # fmt: skip
    record = promote(out, params, {"why": "test"})
    assert record["registry"]["tracking_uri"] == shown
    assert _files_holding(releases, PASSWORD) == []
