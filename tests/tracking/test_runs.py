"""``mltrail runs``: every run across the journal, MLflow and W&B, against the real trackers
(MLflow's SQLite store and a real ``mlflow server``; W&B offline, read by W&B's own reader)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from mltrail.cli import main
from mltrail.cli.runs import RUNS_PARTIAL
from mltrail.config import TrackingParams
from mltrail.contracts.manifest import Manifest
from mltrail.errors import MltrailError
from mltrail.tracking.run import open_run, wait_for_export
from mltrail.tracking.runs import parse_since
from tests.conftest import PARAMS, free_port
from tests.tracking.test_run import _settings as journal_settings
from tests.tracking.test_server import Server

DOWN = "http://127.0.0.1:9/"  # the discard port: nothing listens


def _settings(workdir: Path, **kw: object) -> TrackingParams:
    """test_run's settings (stores under ``workdir``), waiting for each export."""
    return journal_settings(workdir, **({"wait": True} | kw))


def _sets(settings: TrackingParams) -> list[str]:
    """``--params/--set`` for a command that must see these tracking settings."""
    out = ["--params", str(PARAMS)]
    for key in ("mlflow_uri", "wandb_dir", "journal_dir", "retry_for_s", "wait"):
        out += ["--set", f"tracking.{key}={json.dumps(getattr(settings, key))}"]
    return out


RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def runs_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """``mltrail runs ...`` in this process: exit status, stdout, stderr."""

    def run(settings: TrackingParams, *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["runs", *argv, *_sets(settings)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _json(result: tuple[int, str, str]) -> Any:
    return json.loads(result[1])


def _mlflow_run_id(uri: str, run_id: str) -> str:
    client = MlflowClient(uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`mltrail.run_id` = '{run_id}'",
    )
    assert len(runs) == 1
    return str(runs[0].info.run_id)


def test_a_training_under_mlflow_and_wandb_is_one_row_with_both_ids(
    workdir: Path, text_data: Path, runs_cli: RunCli
) -> None:
    settings = _settings(workdir)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    out = workdir / "model"
    argv = ["train", "text", "--data", str(text_data), "--out", str(out)]
    assert main([*argv, "--tracker", "mlflow,wandb", *_sets(settings)]) == 0
    manifest = Manifest.read(out)
    run_id = manifest.tracking.run_id
    assert run_id is not None

    code, text, err = runs_cli(settings, "list")
    assert code == 0, err
    lines = [line for line in text.splitlines() if line.startswith(run_id[:12])]
    assert len(lines) == 1  # one row, not one per tool
    listed = _json(runs_cli(settings, "list", "--json"))
    assert listed["unreachable"] == []
    (row,) = listed["runs"]
    mlflow_id = _mlflow_run_id(settings.mlflow_uri, run_id)
    assert row["run_id"] == run_id
    assert row["trackers"]["mlflow"] | {"url": None} == {
        "export": "done",
        "state": "found",
        "run_id": mlflow_id,
        "status": "FINISHED",
        "url": None,
    }
    assert row["trackers"]["mlflow"]["url"] == f"runs:/{mlflow_id}"
    wandb = row["trackers"]["wandb"]
    assert (wandb["state"], wandb["run_id"], wandb["status"]) == ("found", run_id, "finished")
    assert Path(wandb["url"]).is_dir() and wandb["url"].endswith(run_id)
    assert mlflow_id[:8] in lines[0] and f"wandb {run_id[:8]} finished" in lines[0]
    # The manifest's hashes, the journal's and the trackers' values, merged.
    assert row["stage"] == manifest.stage and row["task"] == "text"
    assert row["status"] == "finished" and row["sources"] == [
        "journal",
        "manifest",
        "mlflow",
        "wandb",
    ]
    assert row["params_sha256"] == manifest.params_sha256
    assert row["data_sha256"] == manifest.data.content_sha256
    assert row["model_sha256"] == manifest.model.sha256
    assert row["commit"] == manifest.git.commit and len(row["commit"]) == 40
    assert row["metrics"] == {k: manifest.metrics[k] for k in ("accuracy", "f1_macro")}
    assert row["duration_s"] > 0 and row["disagreements"] == []
    # show: each value with the sources that state it; the same id from MLflow's side.
    shown = _json(runs_cli(settings, "show", mlflow_id, "--json"))
    assert shown["run"]["run_id"] == run_id
    accuracy = shown["metrics"]["accuracy"]
    assert set(accuracy["sources"]) == {"journal", "manifest", "mlflow", "wandb"}
    assert accuracy["disagree"] is False
    assert set(shown["params"]["sublinear_tf"]["sources"]) >= {"journal", "mlflow", "wandb"}
    assert runs_cli(settings, "list", "--tracker", "wandb", "--task", "text", "--json")[1].count(
        run_id
    )
    assert _json(runs_cli(settings, "list", "--task", "cifar10", "--json"))["runs"] == []


def test_a_pending_mlflow_export_is_shown_as_pending_beside_wandb(
    workdir: Path, runs_cli: RunCli
) -> None:
    settings = _settings(workdir)
    with open_run(f"{DOWN},wandb", settings, "train_text_x", tags={"task": "text"}) as run:
        run.log_metrics({"accuracy": 0.75})
    code, text, err = runs_cli(settings, "list")
    assert code == RUNS_PARTIAL  # the store it was sent to cannot be read
    assert f"mlflow ({DOWN}) could not be read: " in err and len(err.splitlines()) == 1
    assert "mlflow pending, wandb" in text
    (row,) = _json(runs_cli(settings, "list", "--json"))["runs"]
    mlflow = row["trackers"]["mlflow"]
    assert (mlflow["export"], mlflow["state"]) == ("pending", "pending")
    assert "127.0.0.1" in mlflow["error"]  # why: the export's own error
    assert row["trackers"]["wandb"]["state"] == "found"
    assert row["metrics"] == {"accuracy": 0.75}


def test_compare_shows_the_changed_param_the_metric_delta_and_data_and_code(
    workdir: Path, runs_cli: RunCli
) -> None:
    settings = _settings(workdir)
    ids = []
    for c, accuracy, data, commit in ((1.0, 0.8, "d1", "c1"), (2.0, 0.85, "d2", "c1")):
        with open_run("mlflow", settings, "train_text_x", tags={"task": "text"}) as run:
            run.log_params({"C": c, "max_features": 5000})
            run.set_tags({"git_commit": commit, "data_sha256": data})
            run.log_metrics({"accuracy": accuracy})
        ids.append(run.run_id)
    code, text, _ = runs_cli(settings, "compare", ids[0][:10], ids[1][:10])
    assert code == 0
    assert "param   C: 1.0 -> 2.0" in text and "max_features" not in text
    assert "metric  accuracy: 0.8 -> 0.85 (+0.05)" in text
    assert "data    changed: d1 -> d2" in text and "code    same: c1 -> c1" in text
    diff = _json(runs_cli(settings, "compare", ids[0], ids[1], "--json"))
    assert diff["params"] == {"changed": {"C": [1.0, 2.0]}, "only_a": {}, "only_b": {}}
    assert diff["metrics"]["accuracy"]["delta"] == pytest.approx(0.05)
    assert diff["data_sha256"] == {"a": "d1", "b": "d2", "changed": True}
    assert diff["commit"]["changed"] is False
    # A value changed in MLflow after the export: the sources disagree, and show says so.
    client = MlflowClient(settings.mlflow_uri)
    client.set_tag(_mlflow_run_id(settings.mlflow_uri, ids[1]), "git_commit", "c9")
    shown = _json(runs_cli(settings, "show", ids[1], "--json"))
    assert shown["fields"]["commit"] == {
        "value": "c1",
        "sources": {"journal": "c1", "mlflow": "c9"},
        "disagree": True,
    }
    assert shown["run"]["disagreements"] == ["commit"]
    assert (
        'commit                           "c1"  DISAGREE: journal "c1", mlflow "c9"'
        in (runs_cli(settings, "show", ids[1])[1])
    )
    assert _json(runs_cli(settings, "list", "--status", "failed", "--json"))["runs"] == []


@pytest.fixture
def server(workdir: Path) -> Iterator[Server]:
    started = Server(workdir, free_port())
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.slow
def test_mlflow_server_down_lists_wandb_and_the_journal_and_states_the_gap(
    workdir: Path, server: Server, runs_cli: RunCli
) -> None:
    settings = _settings(workdir, mlflow_uri=server.uri)
    with open_run("mlflow,wandb", settings, "train_text_x", tags={"task": "text"}) as run:
        run.log_params({"C": 1.0})
        run.log_metrics({"accuracy": 0.9})
    assert run.run_dir is not None
    wait_for_export(run.run_dir, ["mlflow", "wandb"])
    (row,) = _json(runs_cli(settings, "list", "--json"))["runs"]
    mlflow = row["trackers"]["mlflow"]
    assert mlflow["state"] == "found"
    assert mlflow["url"].startswith(f"{server.uri}/#/experiments/")
    assert mlflow["url"].endswith(f"/runs/{mlflow['run_id']}")

    server.stop()
    code, text, err = runs_cli(settings, "list")
    assert code == RUNS_PARTIAL
    (gap,) = err.splitlines()  # which tool, the error, one line
    assert gap.startswith(f"mltrail: mlflow ({server.uri}) could not be read: ")
    assert "Connection refused" in gap or "Max retries" in gap
    (line,) = [x for x in text.splitlines() if x.startswith(run.run_id[:12])]
    assert f"mlflow unreachable, wandb {run.run_id[:8]} finished" in line
    listed = _json(runs_cli(settings, "list", "--json"))
    (row,) = listed["runs"]
    assert row["status"] == "finished" and row["sources"] == ["journal", "wandb"]
    assert row["trackers"]["mlflow"]["state"] == "unreachable"
    assert row["trackers"]["mlflow"]["export"] == "done"
    assert row["trackers"]["wandb"]["state"] == "found"
    assert row["metrics"] == {"accuracy": 0.9}
    assert [(g["tool"], g["target"]) for g in listed["unreachable"]] == [("mlflow", server.uri)]


def test_bad_input_says_what_is_wrong_and_what_to_do(workdir: Path, runs_cli: RunCli) -> None:
    assert parse_since("2d", now=1_000_000.0) == 1_000_000.0 - 2 * 86400
    assert parse_since("2026-12-01") == parse_since("2026-12-01T00:00+00:00")
    with pytest.raises(MltrailError, match="neither a date nor an age") as info:
        parse_since("yesterday")
    assert "7d" in str(info.value)
    settings = _settings(workdir)
    code, _, err = runs_cli(settings, "show", "nosuchrun")
    assert code == 1
    assert "no run 'nosuchrun'" in err and "mltrail runs list" in err
    assert runs_cli(settings, "list")[1].strip() == "no runs"
