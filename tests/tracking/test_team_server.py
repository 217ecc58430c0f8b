"""A team's tracking server: `mltrail tracking server` (MLflow on PostgreSQL), concurrent
runs, and a server restart in the middle of them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mltrail.tracking.server import TrackingServer, ensure_database
from tests.conftest import free_port, fresh_database
from tests.tracking.test_server import Server

pytest.importorskip("psycopg")
pytestmark = [pytest.mark.slow, pytest.mark.postgres]
BIN = Path(sys.executable).parent


class TeamServer(Server):
    """``mltrail tracking server``: MLflow on PostgreSQL, artifacts served by it."""

    start_timeout_s = 120.0
    stop_timeout_s = 60.0

    def __init__(self, workdir: Path, store: str) -> None:
        super().__init__(workdir, free_port())
        self.store = store

    def command(self) -> list[str]:
        return [
            str(BIN / "mltrail"), "tracking", "server", "--backend-store-uri", self.store,
            "--artifacts", str(self.workdir / "artifacts"), "--port", str(self.port),
        ]  # fmt: skip


@pytest.fixture
def team_server(tmp_path: Path) -> Iterator[TeamServer]:
    # The server creates its database (ensure_database); the name is reserved and dropped here.
    with fresh_database("mltrail_mlflow", create=False) as store:
        server = TeamServer(tmp_path, store)
        server.start()
        yield server
        server.stop()


def _train(
    text_data: Path, workdir: Path, uri: str, i: int, *extra: str
) -> subprocess.Popen[bytes]:
    out = workdir / f"model-{i}"
    return subprocess.Popen(
        [str(BIN / "mltrail"), "train", "text", "--tracker", uri, "--data", str(text_data),
         "--out", str(out), "--params", str(Path(__file__).resolve().parents[2] / "params.yaml"),
         "--set", f"tracking.journal_dir={workdir / 'journal'}", *extra],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _finished_runs(uri: str) -> list:  # type: ignore[type-arg]
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_the_server_command_is_lean_and_creates_its_database(tmp_path: Path) -> None:
    argv, env = TrackingServer(artifacts_destination=tmp_path / "a", workers=3).command()
    assert argv[1] == "server" and "--serve-artifacts" in argv
    assert argv[argv.index("--workers") + 1] == "3"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    with fresh_database("mltrail_created", create=False) as store:
        assert ensure_database(store) is True
        assert ensure_database(store) is False  # already there


def test_eight_runs_logging_at_once_all_complete(
    team_server: TeamServer, text_data: Path, tmp_path: Path
) -> None:
    procs = [_train(text_data, tmp_path, team_server.uri, i, "--set", "tracking.wait=true")
             for i in range(8)]  # fmt: skip
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()[-2000:]
    runs = _finished_runs(team_server.uri)
    assert len(runs) == 8
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["mltrail.run_id"] for r in runs}) == 8
    assert all("accuracy" in r.data.metrics for r in runs)
    client = MlflowClient(team_server.uri)
    files = {f.path for f in client.list_artifacts(runs[0].info.run_id, "mltrail-model")}
    assert files == {
        "mltrail-model/model.npz", "mltrail-model/manifest.json", "mltrail-model/reference.npz",
    }  # fmt: skip


def test_a_server_restart_in_the_middle_loses_no_run(
    team_server: TeamServer, text_data: Path, tmp_path: Path
) -> None:
    procs = [_train(text_data, tmp_path, team_server.uri, i, "--set", "tracking.retry_for_s=90")
             for i in range(4)]  # fmt: skip
    time.sleep(1.0)
    team_server.stop()  # down while the runs train and their exporters try to log
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()[-2000:]  # training never waits or fails
    time.sleep(3)
    team_server.start()  # back on the same port: the exporters' retries get through
    deadline = time.monotonic() + 120
    while len(runs := [r for r in _finished_runs(team_server.uri)
                       if r.info.status == "FINISHED"]) < 4:  # fmt: skip
        assert time.monotonic() < deadline, f"only {len(runs)} of 4 runs arrived"
        time.sleep(1)
    time.sleep(2)
    runs = _finished_runs(team_server.uri)
    assert len(runs) == 4  # each run once: partial attempts were replaced
    assert all("accuracy" in r.data.metrics for r in runs)
