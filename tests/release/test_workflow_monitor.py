"""The workflow's scheduled monitor: a cron trigger, the monitor against the production store
(secrets), its retrain exit code turned into a decision that starts the retrain job, and the
push/pull-request jobs left out of the schedule. The monitor step's shell runs here for real
against a stand-in `mltrail` exiting 0, 3 or 1."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / ".github" / "workflows" / "pipeline.yml"


def _workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(PIPELINE.read_text()))


def _step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in job["steps"] if s.get("id") == step_id)


def test_a_cron_runs_the_monitor_and_a_retrain_decision_starts_the_retrain() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    (cron,) = [t["cron"] for t in triggers["schedule"]]
    assert len(cron.split()) == 5
    jobs = workflow["jobs"]
    assert jobs["monitor"]["if"] == "github.event_name == 'schedule'"
    assert jobs["test"]["if"] == "github.event_name != 'schedule'"  # no tests on the cron
    assert "schedule" not in jobs["release"]["if"]  # push to main only, as before
    check = _step(jobs["monitor"], "check")
    assert check["env"]["MLTRAIL_TELEMETRY_DSN"] == "${{ secrets.MLTRAIL_TELEMETRY_DSN }}"
    assert "--store" not in check["run"]  # the DSN (a password) never on a command line
    assert jobs["monitor"]["outputs"]["decision"] == "${{ steps.check.outputs.decision }}"
    retrain = jobs["retrain"]
    assert retrain["needs"] == "monitor"
    assert retrain["if"] == "needs.monitor.outputs.decision == 'retrain'"
    assert retrain["environment"] == "production"
    assert any("mltrail retrain" in s.get("run", "") for s in retrain["steps"])


@pytest.mark.parametrize(
    ("status", "decision", "job_status"),
    [
        (0, "keep", 0),
        (3, "retrain", 0),
        (1, None, 1),
    ],
)
def test_the_monitor_steps_exit_code_becomes_the_decision(
    tmp_path: Path, status: int, decision: str | None, job_status: int
) -> None:
    check = _step(_workflow()["jobs"]["monitor"], "check")
    code = int(re.findall(r"--retrain-exit-code (\d+)", check["run"])[0])
    assert code == 3
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mltrail = bin_dir / "mltrail"  # what the monitor decided, as its exit status
    mltrail.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\nexit {status}\n')
    mltrail.chmod(0o755)
    output = tmp_path / "github_output"
    output.touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "MLTRAIL_TELEMETRY_DSN": "postgresql://m@db/t",
        "MLFLOW_TRACKING_URI": "http://t",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", check["run"]], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == job_status, done.stderr
    assert "--retrain-exit-code 3" in (tmp_path / "argv").read_text()
    written = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert written.get("decision") == decision
    # An empty secret stops the job before the monitor runs.
    env["MLTRAIL_TELEMETRY_DSN"] = ""
    done = subprocess.run(
        ["bash", "-e", "-c", check["run"]], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "MLTRAIL_TELEMETRY_DSN is empty" in done.stderr
