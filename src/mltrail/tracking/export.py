"""The exporter: replays run journals into the tracking backends, retrying what fails.

Runs as ``python -m mltrail.tracking.export RUN_DIR`` (started by every tracked run, detached
and at low priority) and as ``mltrail tracking sync`` (by hand, or from cron). Each backend is
exported on its own: one being down does not hold the others back. A backend that fails is
retried from the start of the journal (a partial MLflow run is replaced, see
``MlflowTracker.start``) until ``tracking.retry_for_s`` has passed; then its state says
``pending`` with the error, and the next tracked run or ``mltrail tracking sync`` tries again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mltrail.config import TrackingParams
from mltrail.tracking.base import ModelRef, RunStart, Status, Tracker
from mltrail.tracking.journal import (
    JournalReader,
    all_records,
    read_state,
    write_state,
    writer_alive,
)
from mltrail.tracking.registry import BackendSpec

log = logging.getLogger("mltrail.export")
POLL_S = 0.1


@contextmanager
def run_lock(run_dir: Path, wait: bool) -> Iterator[bool]:
    """Hold the run's export lock; yield whether we got it (``wait``: block until we do)."""
    with (run_dir / "export.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Replay:
    """One backend's export of one run: applies journal records in order."""

    def __init__(self, spec: BackendSpec, settings: TrackingParams) -> None:
        self.spec = spec
        self.settings = settings
        self.tracker: Tracker | None = None
        self.error: str | None = None
        self.ref: dict[str, str] | None = None

    def apply(self, record: dict[str, Any]) -> None:
        if self.error is not None or self.ref is not None:
            return
        try:
            self._apply(record)
        except Exception as exc:  # a backend's failure must not stop the others
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: %s", self.spec.name, self.error)
            log.debug("%s", traceback.format_exc())
            if self.tracker is not None:
                self.tracker.abort()

    def _apply(self, record: dict[str, Any]) -> None:
        op = record["op"]
        if op == "start":
            self.tracker = self.spec.build(self.settings)
            self.tracker.start(
                RunStart(
                    run_id=record["run_id"],
                    run_name=record["run_name"],
                    experiment=record["experiment"],
                    start_time=record["time"],
                    tags=record.get("tags", {}),
                )
            )
            return
        tracker = self.tracker
        if tracker is None:
            raise RuntimeError("the journal does not begin with a start record")
        if op == "params":
            tracker.log_params(record["values"])
        elif op == "metrics":
            tracker.log_metrics(record["values"], record.get("step"), record["time"])
        elif op == "tags":
            tracker.set_tags(record["values"])
        elif op == "artifact":
            tracker.log_artifact(Path(record["path"]))
        elif op == "model":
            tracker.log_model(
                ModelRef(
                    path=Path(record["path"]),
                    flavor=record["flavor"],
                    file=record["file"],
                    sha256=record["sha256"],
                    info=record.get("info", {}),
                )
            )
        elif op == "end":
            self.ref = tracker.finish(record["status"], record["time"])
        else:
            raise ValueError(f"unknown journal record {op!r}")


def _settings(start: dict[str, Any]) -> TrackingParams:
    return TrackingParams.model_validate(start["settings"])


def _end_record(records: list[dict[str, Any]], start: dict[str, Any]) -> dict[str, Any] | None:
    """The journal's end record; a synthetic ``failed`` one if its writer died without one."""
    for record in records:
        if record["op"] == "end":
            return record
    if writer_alive(start):
        return None
    status: Status = "failed"
    last = records[-1]["time"] if records else start["time"]
    return {"op": "end", "status": status, "time": last, "synthetic": "the training process died"}


def export_run(
    run_dir: Path, follow: bool = False, on_started: Callable[[], None] | None = None
) -> dict[str, str]:
    """Export ``run_dir`` to each backend not yet done; return backend -> done/pending/busy.

    ``follow``: the journal may still grow; replay records as they arrive until it ends.
    ``on_started``: called once the backends' runs exist (the start record is replayed).
    """
    # The run's own exporter (follow) waits: a sync elsewhere may hold the lock for a moment
    # to look at this run. A sync gives up at once: someone else is exporting the run.
    with run_lock(run_dir, wait=follow) as locked:
        if not locked:
            return {"*": "busy"}
        return _export_locked(run_dir, follow, on_started)


def _export_locked(
    run_dir: Path, follow: bool, on_started: Callable[[], None] | None
) -> dict[str, str]:
    reader = JournalReader(run_dir)
    records: list[dict[str, Any]] = []
    replays: list[_Replay] = []
    end: dict[str, Any] | None = None
    while end is None:
        fresh = list(reader.new_records())
        if fresh and not records:
            start = fresh[0]
            settings = _settings(start)
            specs = [BackendSpec(**b) for b in start["backends"]]
            todo = [s for s in specs if (read_state(run_dir, s.name) or {}).get("status") != "done"]
            replays = [_Replay(s, settings) for s in todo]
        records.extend(fresh)
        for record in fresh:
            if record["op"] != "end":
                for replay in replays:
                    replay.apply(record)
            if record["op"] == "start" and on_started is not None:
                on_started()
        if records:
            end = _end_record(records, records[0])
        if end is None:
            if not follow:
                return {}  # still being written by a live process: its own exporter handles it
            time.sleep(POLL_S)
    for replay in replays:
        replay.apply(end)
    settings = _settings(records[0])
    deadline = time.monotonic() + (settings.retry_for_s if follow else 0.0)
    delay = 1.0
    result: dict[str, str] = {}
    for replay in replays:
        attempts = 1
        while replay.ref is None and time.monotonic() < deadline:
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 10.0)
            replay = _Replay(replay.spec, settings)
            for record in [*records, end]:
                replay.apply(record)
            attempts += 1
        if replay.ref is not None:
            write_state(
                run_dir,
                replay.spec.name,
                {"status": "done", **replay.ref, "exported_at": time.time()},
            )
            result[replay.spec.name] = "done"
        else:
            write_state(
                run_dir,
                replay.spec.name,
                {
                    "status": "pending",
                    "error": replay.error,
                    "attempts": attempts,
                    "at": time.time(),
                },
            )
            result[replay.spec.name] = "pending"
    return result


def pending_runs(journal_dir: Path) -> list[Path]:
    """Run folders with a backend whose export is not done."""
    found = []
    for run_dir in sorted(p for p in journal_dir.glob("*") if (p / "journal.jsonl").is_file()):
        records = all_records(run_dir)
        if not records or records[0]["op"] != "start":
            continue
        if _end_record(records, records[0]) is None:
            continue  # still being written: its own exporter follows it
        names = [b["name"] for b in records[0]["backends"]]
        if any((read_state(run_dir, n) or {}).get("status") != "done" for n in names):
            found.append(run_dir)
    return found


def sync(journal_dir: Path) -> dict[str, dict[str, str]]:
    """Export every pending run under ``journal_dir`` (skipping runs still being written)."""
    return {run_dir.name: export_run(run_dir) for run_dir in pending_runs(journal_dir)}


def _prewarm(run_dir: Path) -> None:
    """Import the chosen clients now, at normal priority (then the runs are created, then
    the exporter drops to idle priority).

    A training process spends its first seconds importing its own libraries on one core, so
    the other is free. Done later at idle priority, the same 2-3 s of CPU stretched over the
    training and filled every gap between its threads' work: an MLflow export slowed a CNN
    epoch by about 10% (benchmarks/cnn_recipe.py measures it).
    """
    records = all_records(run_dir)
    names = {b["name"] for b in records[0]["backends"]} if records else set()
    if "mlflow" in names:
        import mlflow.sklearn  # noqa: F401

        import mltrail.tracking.mlflow_backend
    if "wandb" in names:
        import mltrail.tracking.wandb_backend  # noqa: F401


def _yield_cpu() -> None:
    """From now on, run only on CPU time nobody else wants: training comes first."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Fail fast on a server that is down: this loop retries on its own schedule.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # No usage telemetry threads beside the training (and no calls out of a closed network).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    run_dir = Path(argv[0])
    _prewarm(run_dir)
    result = export_run(run_dir, follow=True, on_started=_yield_cpu)
    log.info("export of %s: %s", run_dir.name, result)
    # Runs an earlier exporter could not finish (a backend was down, a process was killed).
    for name, other in sync(run_dir.parent).items():
        log.info("sync of %s: %s", name, other)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
