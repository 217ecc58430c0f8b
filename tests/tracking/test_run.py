"""The journal and the background exporter, against the real MLflow store and W&B client."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mltrail.config import TrackingParams
from mltrail.errors import ParamsError
from mltrail.tracking.export import export_run, pending_runs, sync
from mltrail.tracking.journal import JournalReader, JournalWriter, all_records, read_state
from mltrail.tracking.registry import parse
from mltrail.tracking.run import open_run, reserve_run, wait_for_export


def _settings(workdir: Path, **kw: object) -> TrackingParams:
    values = {
        "mlflow_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "wandb_dir": str(workdir),
        "journal_dir": str(workdir / "journal"),
        "retry_for_s": 0.0,
    } | kw
    return TrackingParams.model_validate(values)


def _mlflow_run(workdir: Path, run_id: str):  # type: ignore[no-untyped-def]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`mltrail.run_id` = '{run_id}'",
    )
    assert len(runs) == 1, runs
    return runs[0]


def test_registry_names_uris_and_errors(workdir: Path) -> None:
    settings = _settings(workdir)
    assert parse("none", settings) == []
    assert [(b.name, b.target) for b in parse("mlflow,wandb", settings)] == [
        ("mlflow", settings.mlflow_uri),
        ("wandb", "mltrail"),
    ]
    assert parse("http://127.0.0.1:5000", settings)[0].target == "http://127.0.0.1:5000"
    assert parse("wandb://team-x", settings)[0].target == "team-x"
    with pytest.raises(ParamsError) as info:
        parse("mlfow", settings)
    assert "unknown tracker 'mlfow'" in str(info.value)
    assert "none, mlflow, wandb" in str(info.value)
    with pytest.raises(ParamsError, match="twice"):
        parse("mlflow,sqlite:///x.db", settings)


def test_none_tracker_journals_nothing(workdir: Path) -> None:
    with open_run("none", _settings(workdir), "baseline") as run:
        run.log_metrics({"accuracy": 1.0})
    assert run.status == "finished" and run.run_dir is None
    assert not (workdir / "journal").exists()


def test_run_is_exported_in_the_background_with_training_times(workdir: Path) -> None:
    settings = _settings(workdir)
    with open_run("mlflow,wandb", settings, "bg", tags={"task": "text"}) as run:
        run.log_params({"C": 2.0})
        run.log_metrics({"loss": 0.5}, step=1)
        run.log_metrics({"accuracy": 0.9})
    assert run.run_dir is not None
    states = wait_for_export(run.run_dir, ["mlflow", "wandb"])
    assert {s["status"] for s in states.values()} == {"done"}
    start, end = all_records(run.run_dir)[0], all_records(run.run_dir)[-1]
    found = _mlflow_run(workdir, run.run_id)
    assert found.info.status == "FINISHED"
    assert found.info.start_time == int(start["time"] * 1000)  # when training started
    assert found.info.end_time == int(end["time"] * 1000)
    assert found.data.params == {"C": "2.0"} and found.data.metrics["accuracy"] == 0.9
    assert Path(states["wandb"]["run_dir"]).is_dir()
    assert "export of" in (run.run_dir / "export.log").read_text()


def test_a_reserved_run_has_its_exporter_waiting_before_the_journal_begins(workdir: Path) -> None:
    settings = _settings(workdir)
    reserved = reserve_run("mlflow", settings, flavor="sklearn")
    assert reserved.run_dir is not None and reserved.exporter_started
    time.sleep(0.5)  # the exporter is up and waiting: no journal yet
    assert not (reserved.run_dir / "journal.jsonl").exists()
    with open_run(reserved, settings, "early") as run:
        run.log_metrics({"accuracy": 0.75})
    assert run.run_id == reserved.run_id and run.run_dir == reserved.run_dir
    states = wait_for_export(reserved.run_dir, ["mlflow"])
    assert states["mlflow"]["status"] == "done"
    assert _mlflow_run(workdir, run.run_id).data.metrics["accuracy"] == 0.75
    log = (reserved.run_dir / "export.log").read_text()
    assert log.count("export of") == 1  # one exporter: open_run did not start a second


def _exporters_of(run_dir: Path) -> list[int]:
    """The exporter processes of ``run_dir`` (Linux /proc): the interpreter, not the ``sh``
    and ``chrt`` that start it."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        exporter = argv[0] == sys.executable.encode() and b"mltrail.tracking.export" in argv
        if exporter and str(run_dir).encode() in argv:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")
def test_the_exporter_takes_only_idle_cpu_from_its_first_moment(workdir: Path) -> None:
    """Its imports run while training imports its own: at normal priority they took a busy
    machine's CPU from the training (benchmarks/tracking_overhead.py: 1.26x instead of ~1.0x)."""
    settings = _settings(workdir)
    reserved = reserve_run("mlflow,wandb", settings, flavor="sklearn")
    assert reserved.run_dir is not None
    deadline = time.monotonic() + 10
    policies: list[int] = []
    while time.monotonic() < deadline and not policies:
        # Checked while the exporter is still preparing: the journal has not begun.
        for pid in _exporters_of(reserved.run_dir):
            with contextlib.suppress(ProcessLookupError):
                policies.append(os.sched_getscheduler(pid))
        time.sleep(0.02)
    assert not (reserved.run_dir / "journal.jsonl").exists()
    assert policies == [os.SCHED_IDLE]
    with open_run(reserved, settings, "idle") as run:
        run.log_metrics({"accuracy": 0.5})
    states = wait_for_export(reserved.run_dir, ["mlflow", "wandb"])
    assert {s["status"] for s in states.values()} == {"done"}


def test_a_reservation_never_opened_leaves_nothing(workdir: Path) -> None:
    """The process that reserved a run exits before starting it (say, its data is missing):
    its exporter removes the empty run folder and exits."""
    settings = _settings(workdir)
    script = (
        "import sys; from mltrail.config import TrackingParams; "
        "from mltrail.tracking.run import reserve_run; "
        "r = reserve_run('mlflow', TrackingParams.model_validate_json(sys.argv[1])); "
        "print(r.run_dir)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, settings.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
    )
    run_dir = Path(done.stdout.strip())
    deadline = time.monotonic() + 60
    while run_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_dir.exists()
    assert pending_runs(workdir / "journal") == []


def test_a_wrong_tracker_is_refused_before_anything_starts(workdir: Path) -> None:
    with pytest.raises(ParamsError, match="unknown tracker"):
        reserve_run("mlflow,wandbb", _settings(workdir))
    assert not (workdir / "journal").exists()


@pytest.mark.parametrize(("error", "status", "mlflow_status"), [
    (RuntimeError("diverged"), "failed", "FAILED"),
    (KeyboardInterrupt(), "killed", "KILLED"),
])  # fmt: skip
def test_an_exception_ends_the_run_with_its_status(
    workdir: Path, error: BaseException, status: str, mlflow_status: str
) -> None:
    settings = _settings(workdir, wait=True)
    with pytest.raises(type(error)), open_run("mlflow", settings, "boom") as run:
        run.log_metrics({"loss": 1.0}, step=1)
        raise error
    assert run.status == status
    assert run.run_dir is not None
    assert all_records(run.run_dir)[-1]["status"] == status
    assert _mlflow_run(workdir, run.run_id).info.status == mlflow_status


def test_a_run_whose_process_died_is_exported_as_failed(workdir: Path) -> None:
    """A journal with no end, written by a process that no longer exists."""
    settings = _settings(workdir)
    run_dir = workdir / "journal" / ("d" * 32)
    journal = JournalWriter(run_dir)
    dead_pid = _dead_pid()
    journal.append("start", run_id="d" * 32, run_name="crashed", experiment="mltrail", tags={},
                   pid=dead_pid, host=os.uname().nodename,
                   backends=[{"name": "mlflow", "target": settings.mlflow_uri}],
                   settings=settings.model_dump(mode="json"))  # fmt: skip
    journal.append("metrics", values={"loss": 0.7}, step=1)
    journal.close()
    assert pending_runs(workdir / "journal") == [run_dir]
    assert sync(workdir / "journal") == {"d" * 32: {"mlflow": "done"}}
    found = _mlflow_run(workdir, "d" * 32)
    assert found.info.status == "FAILED" and found.data.metrics["loss"] == 0.7
    assert pending_runs(workdir / "journal") == []


def test_a_writer_that_ends_its_journal_between_two_reads_is_not_a_crash(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a fast training run met (found by the benchmark): the exporter reads the
    journal's first lines, the training writes the rest and exits, then the exporter sees
    the writer gone. The run must be exported whole and ``finished``, not cut short as
    ``failed``."""
    settings = _settings(workdir)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run_dir = workdir / "journal" / ("f" * 32)
    journal = JournalWriter(run_dir)
    journal.append("start", run_id="f" * 32, run_name="fast", experiment="mltrail", tags={},
                   pid=writer.pid, host=os.uname().nodename,
                   backends=[{"name": "mlflow", "target": settings.mlflow_uri}],
                   settings=settings.model_dump(mode="json"))  # fmt: skip
    journal.append("params", values={"C": 1.0})
    original = JournalReader.new_records
    finished: list[object] = []

    def read_then_writer_finishes(self: JournalReader):  # type: ignore[no-untyped-def]
        yield from original(self)
        if not finished:  # right after the first read: the rest, then the writer exits
            finished.append(True)
            journal.append("metrics", values={"accuracy": 0.9})
            journal.append("end", status="finished")
            journal.close()
            writer.kill()
            writer.wait()

    monkeypatch.setattr(JournalReader, "new_records", read_then_writer_finishes)
    assert export_run(run_dir, follow=True) == {"mlflow": "done"}
    found = _mlflow_run(workdir, "f" * 32)
    assert found.info.status == "FINISHED"
    assert found.data.metrics["accuracy"] == 0.9


def test_a_run_still_being_written_is_left_to_its_own_exporter(workdir: Path) -> None:
    settings = _settings(workdir)
    run_dir = workdir / "journal" / ("e" * 32)
    journal = JournalWriter(run_dir)
    journal.append("start", run_id="e" * 32, run_name="live", experiment="mltrail", tags={},
                   pid=os.getpid(), host=os.uname().nodename,
                   backends=[{"name": "mlflow", "target": settings.mlflow_uri}],
                   settings=settings.model_dump(mode="json"))  # fmt: skip
    assert export_run(run_dir) == {}
    assert read_state(run_dir, "mlflow") is None
    journal.close()


def test_a_backend_that_is_down_leaves_the_run_pending_then_sync_exports_it(
    workdir: Path,
) -> None:
    down = "http://127.0.0.1:9/"  # discard port: nothing listens
    settings = _settings(workdir, wait=True)
    with open_run(f"{down},wandb", settings, "down") as run:
        run.log_metrics({"accuracy": 0.8})
    assert run.run_dir is not None
    assert read_state(run.run_dir, "mlflow")["status"] == "pending"  # type: ignore[index]
    assert read_state(run.run_dir, "wandb")["status"] == "done"  # type: ignore[index]
    # The server "comes back": point the journal at a store that works (same as a restart).
    start = json.loads((run.run_dir / "journal.jsonl").read_text().splitlines()[0])
    start["backends"][0]["target"] = settings.mlflow_uri
    lines = (run.run_dir / "journal.jsonl").read_text().splitlines()
    lines[0] = json.dumps(start)
    (run.run_dir / "journal.jsonl").write_text("\n".join(lines) + "\n")
    # The run's exporter, once done, syncs pending runs itself (this one too): a sync while it
    # does so finds the run "busy". Wait for it to exit, as a later `tracking sync` would.
    deadline = time.monotonic() + 60
    while _exporters_of(run.run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sync(workdir / "journal") == {run.run_id: {"mlflow": "done"}}
    assert _mlflow_run(workdir, run.run_id).data.metrics["accuracy"] == 0.8


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_exporter_waits_for_the_journal_to_end(workdir: Path) -> None:
    settings = _settings(workdir)
    with open_run("mlflow", settings, "slow") as run:
        time.sleep(1.0)  # the exporter has started and follows the journal meanwhile
        run.log_metrics({"late": 1.0})
    assert run.run_dir is not None
    wait_for_export(run.run_dir, ["mlflow"])
    assert _mlflow_run(workdir, run.run_id).data.metrics["late"] == 1.0


def test_the_next_run_exports_what_an_earlier_one_left_pending(workdir: Path) -> None:
    settings = _settings(workdir)
    old = workdir / "journal" / ("f" * 32)
    journal = JournalWriter(old)
    journal.append("start", run_id="f" * 32, run_name="left-behind", experiment="mltrail",
                   tags={}, pid=_dead_pid(), host=os.uname().nodename,
                   backends=[{"name": "mlflow", "target": settings.mlflow_uri}],
                   settings=settings.model_dump(mode="json"))  # fmt: skip
    journal.append("end", status="finished")
    journal.close()
    with open_run("mlflow", settings, "next") as run:
        run.log_metrics({"accuracy": 0.5})
    deadline = time.monotonic() + 120
    while (read_state(old, "mlflow") or {}).get("status") != "done":
        assert time.monotonic() < deadline, "the next run's exporter did not sync the old run"
        time.sleep(0.2)
    assert _mlflow_run(workdir, "f" * 32).info.status == "FINISHED"


def _pending_run(settings: TrackingParams, name: str) -> Path:
    """A finished run whose MLflow export is pending (its server is down)."""
    with open_run("http://127.0.0.1:9/", settings, name) as run:
        run.log_metrics({"accuracy": 0.5})
    assert run.run_dir is not None
    assert read_state(run.run_dir, "mlflow")["status"] == "pending"  # type: ignore[index]
    return run.run_dir


def _exporters_gone(journal_dir: Path, timeout_s: float = 60) -> None:
    """Wait until no exporter of these runs runs (each one syncs the others as it ends)."""
    deadline = time.monotonic() + timeout_s
    while any(str(journal_dir).encode() in p.read_bytes() for p in _cmdlines()):
        assert time.monotonic() < deadline, "an exporter did not exit"
        time.sleep(0.05)


def _cmdlines() -> list[Path]:
    return [p for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p)]


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def _server_back(run_dir: Path, uri: str) -> None:
    """Point the run's journal at a store that works (as after a server restart)."""
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    start = json.loads(lines[0])
    start["backends"][0]["target"] = uri
    lines[0] = json.dumps(start)
    (run_dir / "journal.jsonl").write_text("\n".join(lines) + "\n")


def test_sync_skips_a_corrupt_run_names_its_line_and_exports_the_rest(workdir: Path) -> None:
    settings = _settings(workdir, wait=True)
    runs = sorted(_pending_run(settings, f"r{i}") for i in range(3))
    _exporters_gone(workdir / "journal")
    for run_dir in runs:
        _server_back(run_dir, settings.mlflow_uri)
    bad = runs[0]  # first in sync's order: it must not hold back the ones after it
    lines = (bad / "journal.jsonl").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2] + "\x00garbled"
    (bad / "journal.jsonl").write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "mltrail.cli", "tracking", "sync", "--params",
         str(Path(__file__).resolve().parents[2] / "params.yaml"),
         "--set", f"tracking.journal_dir={workdir / 'journal'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"{bad.name}: skipped: {bad / 'journal.jsonl'} line 2 is not a journal record" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert "2 run(s) to export, 0 still pending, 1 skipped (corrupt journal)" in done.stdout
    for healthy in runs[1:]:
        assert read_state(healthy, "mlflow")["status"] == "done"  # type: ignore[index]
        assert _mlflow_run(workdir, healthy.name).data.metrics["accuracy"] == 0.5
    assert read_state(bad, "mlflow")["status"] == "pending"  # type: ignore[index]
