"""A real ``mlflow server`` that goes down in the middle of a tracked training run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mltrail.config import TrackingParams
from mltrail.tracking.journal import read_state
from mltrail.tracking.run import open_run, wait_for_export
from tests.conftest import free_port

pytestmark = pytest.mark.slow


class Server:
    """A real MLflow tracking server in its own process group (``command`` says which)."""

    start_timeout_s = 90.0
    stop_timeout_s = 30.0

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'server.db'}",
            "--artifacts-destination", str(self.workdir / "server-artifacts"),
        ]  # fmt: skip

    def start(self) -> None:
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            self.command(), cwd=self.workdir, env=env, start_new_session=True,
            stdout=(self.workdir / "server.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(
            f"mlflow server did not start: {(self.workdir / 'server.log').read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=self.stop_timeout_s)
        self.proc = None


@pytest.fixture
def server(workdir: Path) -> Iterator[Server]:
    srv = Server(workdir, free_port())
    srv.start()
    yield srv
    srv.stop()


def _runs(client: MlflowClient, run_id: str) -> list:  # type: ignore[type-arg]
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`mltrail.run_id` = '{run_id}'")


def test_server_down_mid_run_then_back(server: Server, workdir: Path) -> None:
    settings = TrackingParams(journal_dir=str(workdir / "journal"), retry_for_s=1.0)
    client = MlflowClient(server.uri)
    with open_run(server.uri, settings, "outage") as run:
        run.log_params({"C": 1.0})
        deadline = time.monotonic() + 60
        while not _runs(client, run.run_id):  # the exporter has created the run on the server
            assert time.monotonic() < deadline, "the exporter never reached the server"
            time.sleep(0.2)
        server.stop()
        for epoch in range(1, 4):  # training goes on while the server is down
            run.log_metrics({"loss": 1.0 / epoch}, step=epoch)
        run.log_metrics({"accuracy": 0.81})
    assert run.status == "finished" and run.run_dir is not None
    state = wait_for_export(run.run_dir, ["mlflow"])["mlflow"]
    assert state["status"] == "pending" and state["error"]

    server.start()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mltrail"), "tracking", "sync",
         "--params", str(Path(__file__).parents[2] / "params.yaml"),
         "--set", f"tracking.journal_dir={workdir / 'journal'}"],
        capture_output=True, text=True, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_state(run.run_dir, "mlflow")["status"] == "done"  # type: ignore[index]
    runs = _runs(MlflowClient(server.uri), run.run_id)
    assert len(runs) == 1  # the partial run from before the outage was replaced
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics == {"loss": pytest.approx(1 / 3), "accuracy": 0.81}
    assert runs[0].data.params == {"C": "1.0"}
