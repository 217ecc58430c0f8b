"""The exporter: replays run journals into the tracking backends, retrying what fails.

Runs as ``python -m mltrail.tracking.export RUN_DIR`` (started by every tracked run, detached
and at low priority) and as ``mltrail tracking sync`` (by hand, or from cron). Each backend is
exported on its own: one being down does not hold the others back. A backend that fails is
retried from the start of the journal (a partial MLflow run is replaced, see
``MlflowTracker.start``) until ``tracking.retry_for_s`` has passed; then its state says
``pending`` with the error, and the next tracked run or ``mltrail tracking sync`` tries again.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import logging
import os
import shutil
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
    JOURNAL,
    JournalCorrupt,
    JournalReader,
    all_records,
    pid_alive,
    read_state,
    write_state,
    writer_alive,
)
from mltrail.tracking.registry import BackendSpec, hide, mlflow_fail_fast

log = logging.getLogger("mltrail.export")
POLL_S = 0.1
ABANDONED = {"*": "abandoned"}


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
            # An error may quote the URI it connected to: its credentials never reach the
            # state file or the log.
            self.error = hide(f"{type(exc).__name__}: {exc}", self.spec.target)
            log.warning("%s: %s", self.spec.name, self.error)
            log.debug("%s", hide(traceback.format_exc(), self.spec.target))
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


def _end_record(records: list[dict[str, Any]], writer_gone: bool) -> dict[str, Any] | None:
    """The journal's end record; a synthetic ``failed`` one if its writer died without one.

    ``writer_gone`` must have been observed *before* ``records`` were read: a writer that
    ends its journal and exits between a read and a liveness check would otherwise look like
    one that died mid-run, and a finished run would be exported as failed and truncated.
    """
    for record in records:
        if record["op"] == "end":
            return record
    if not writer_gone:
        return None
    status: Status = "failed"
    last = records[-1]["time"] if records else 0.0
    return {"op": "end", "status": status, "time": last, "synthetic": "the training process died"}


def _writer_gone(run_dir: Path, writer_pid: int | None) -> bool:
    """Whether the process writing ``run_dir``'s journal has exited (so it writes no more)."""
    start = next(JournalReader(run_dir).new_records(), None)
    if start is not None:
        return not writer_alive(start)
    return writer_pid is not None and not pid_alive(writer_pid)


def export_run(
    run_dir: Path,
    follow: bool = False,
    on_started: Callable[[], None] | None = None,
    writer_pid: int | None = None,
) -> dict[str, str]:
    """Export ``run_dir`` to each backend not yet done; return backend -> done/pending/busy.

    ``follow``: the journal may still grow; replay records as they arrive until it ends.
    ``on_started``: called once the backends' runs exist (the start record is replayed).
    ``writer_pid``: the journal may not have begun yet; if this process exits before it
    does, return :data:`ABANDONED`.
    """
    # The run's own exporter (follow) waits: a sync elsewhere may hold the lock for a moment
    # to look at this run. A sync gives up at once: someone else is exporting the run.
    with run_lock(run_dir, wait=follow) as locked:
        if not locked:
            return {"*": "busy"}
        return _export_locked(run_dir, follow, on_started, writer_pid)


def _export_locked(
    run_dir: Path,
    follow: bool,
    on_started: Callable[[], None] | None,
    writer_pid: int | None,
) -> dict[str, str]:
    read = _read_to_end(run_dir, follow, on_started, writer_pid)
    if isinstance(read, dict):
        return read
    records, replays, end = read
    for replay in replays:
        replay.apply(end)
    settings = _settings(records[0])
    deadline = time.monotonic() + (settings.retry_for_s if follow else 0.0)
    return {r.spec.name: _deliver(run_dir, r, [*records, end], deadline) for r in replays}


_Read = tuple[list[dict[str, Any]], list["_Replay"], dict[str, Any]]


def _read_to_end(
    run_dir: Path,
    follow: bool,
    on_started: Callable[[], None] | None,
    writer_pid: int | None,
) -> _Read | dict[str, str]:
    """The journal's records up to its end record, replayed into each backend not yet done as
    they arrive (``follow``: waiting for a live writer); or the result when there is nothing
    to export now."""
    reader = JournalReader(run_dir)
    records: list[dict[str, Any]] = []
    replays: list[_Replay] = []
    while True:
        # Whether the writer is gone, decided before reading (see _end_record); once the start
        # record is in hand, its pid is checked without reading the file again every poll.
        gone = not writer_alive(records[0]) if records else _writer_gone(run_dir, writer_pid)
        fresh = list(reader.new_records())
        if fresh and not records:
            replays = _replays(run_dir, fresh[0])
        records.extend(fresh)
        for record in fresh:
            if record["op"] != "end":
                for replay in replays:
                    replay.apply(record)
            if record["op"] == "start" and on_started is not None:
                on_started()
        end = _end_record(records, gone) if records else None
        if end is not None:
            return records, replays, end
        if not records and gone:
            return ABANDONED  # its process exited before the journal began
        if not follow:
            return {}  # still being written by a live process: its own exporter handles it
        time.sleep(POLL_S)


def _replays(run_dir: Path, start: dict[str, Any]) -> list[_Replay]:
    """One replay per backend of the run whose export is not done yet."""
    settings = _settings(start)
    specs = [BackendSpec(**b) for b in start["backends"]]
    todo = [s for s in specs if (read_state(run_dir, s.name) or {}).get("status") != "done"]
    return [_Replay(s, settings) for s in todo]


def _deliver(run_dir: Path, replay: _Replay, records: list[dict[str, Any]], deadline: float) -> str:
    """Retry one backend (a fresh replay each time, backing off) until it has the run or the
    deadline passes; record its state and return it (done or pending)."""
    attempts, delay = 1, 1.0
    while replay.ref is None and time.monotonic() < deadline:
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 10.0)
        replay = _Replay(replay.spec, _settings(records[0]))
        for record in records:
            replay.apply(record)
        attempts += 1
    if replay.ref is not None:
        state = {"status": "done", **replay.ref, "exported_at": time.time()}
        write_state(run_dir, replay.spec.name, state)
        return "done"
    state = {"status": "pending", "error": replay.error, "attempts": attempts, "at": time.time()}
    write_state(run_dir, replay.spec.name, state)
    return "pending"


def _run_dirs(journal_dir: Path) -> list[Path]:
    return sorted(p for p in journal_dir.glob("*") if (p / JOURNAL).is_file())


def _is_pending(run_dir: Path) -> bool:
    """Whether the run is complete and a backend's export of it is not done;
    :class:`JournalCorrupt` when its journal cannot be read."""
    gone = _writer_gone(run_dir, None)
    records = all_records(run_dir)
    if not records or records[0]["op"] != "start":
        return False
    if _end_record(records, gone) is None:
        return False  # still being written: its own exporter follows it
    names = [b["name"] for b in records[0]["backends"]]
    return any((read_state(run_dir, n) or {}).get("status") != "done" for n in names)


def pending_runs(journal_dir: Path) -> list[Path]:
    """Run folders with a backend whose export is not done (corrupt ones left out: see
    :func:`sync`)."""
    found = []
    for run_dir in _run_dirs(journal_dir):
        with contextlib.suppress(JournalCorrupt):
            if _is_pending(run_dir):
                found.append(run_dir)
    return found


CORRUPT = "corrupt"
"""The key of a run :func:`sync` skipped: its value says which file and line."""


def sync(journal_dir: Path) -> dict[str, dict[str, str]]:
    """Export every pending run under ``journal_dir`` (skipping runs still being written).

    A run whose journal has a line that is not a record is skipped and reported as
    ``{CORRUPT: "<file> line <n> ..."}``; the other runs are exported all the same (one bad
    run must not hold back every healthy one behind it)."""
    results: dict[str, dict[str, str]] = {}
    for run_dir in _run_dirs(journal_dir):
        try:
            if _is_pending(run_dir):
                results[run_dir.name] = export_run(run_dir)
        except JournalCorrupt as exc:
            log.warning("%s", exc.message)
            results[run_dir.name] = {CORRUPT: exc.message}
    return results


# What an exporter prepares before the run begins, by backend and, when MLflow logs the model,
# by the model's flavor (loading the model file and MLflow's flavor module).
WARM_MODULES = {
    "mlflow": ("mlflow", "mltrail.tracking.mlflow_backend"),
    "wandb": ("mltrail.tracking.wandb_backend",),
    "sklearn": ("mlflow.sklearn", "mltrail.models.text"),
    "pytorch": ("mlflow.pytorch", "mltrail.models.cnn_io"),
}


def _prewarm(warm: list[str]) -> None:
    """Import what the export will need now, before the run begins.

    A training process spends its first seconds importing its own libraries, on one core, so
    the other is free and these imports (2-3 s of CPU with both clients) run there. Done after
    the training, they would delay the run's completion in the tracker by as much.

    They run at idle priority like the rest of the export (see :func:`main`): at normal
    priority they took CPU from the training whenever the machine was busy (a test run or
    another job on a 2-core runner): +1.1 s (1.26x) on a 4.4 s text training, measured
    2026-12-03 with another process busy on one core; at idle priority they only use CPU the
    training does not want.
    """
    names = set(warm)
    if "mlflow" not in names:
        names -= {"sklearn", "pytorch"}  # only MLflow loads the model to log it
    for name in sorted(names):
        for module in WARM_MODULES.get(name, ()):
            importlib.import_module(module)
    if "mlflow" in names:
        _skip_package_map()


def _skip_package_map() -> None:
    """Spare MLflow its map of every installed package's modules.

    Logging a model, MLflow checks each pinned requirement against the installed version and
    builds, on first use, a map from every installed distribution to its modules
    (``importlib_metadata.packages_distributions()``: 1.5-2.8 s of CPU in an environment with
    torch, dvc and both trackers, measured 2026-12-03 with cProfile; the largest single cost
    of exporting a text run). The map serves only as a fallback for a package whose metadata
    cannot be read, and mltrail's requirements are read from that metadata
    (``importlib.metadata.version`` in the train stages), so an empty map gives the same
    check. A private name: when a release moves it, this does nothing and MLflow builds its
    map as before.
    """
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        if requirements_utils._MODULES_TO_PACKAGES is None:
            requirements_utils._MODULES_TO_PACKAGES = {}  # type: ignore[assignment]


def _yield_cpu() -> None:
    """From now on, run only on CPU time nobody else wants: training comes first.

    The same for the processes this one started (W&B's service, ``wandb-core``, started by
    ``wandb.init`` at normal priority with several threads of its own).
    """
    for pid in [0, *_children(os.getpid())]:
        try:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):  # not Linux, or the child is gone
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, 19)


def _children(parent: int) -> list[int]:
    """Descendants of ``parent`` (Linux /proc; none elsewhere)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the command name (which may hold spaces): state, ppid, ...
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [parent]
    while frontier:
        current = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == current]
        found += kids
        frontier += kids
    return found


def _backends_of(run_dir: Path) -> list[str]:
    """What an exporter started after the journal began prepares: the backends its start
    record names (none when it cannot be read: the export reports that)."""
    try:
        records = all_records(run_dir)
    except JournalCorrupt:
        return []
    return [b["name"] for b in records[0]["backends"]] if records else []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mltrail.tracking.export")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--writer-pid", type=int, help="the process that will write the journal (started early)"
    )
    parser.add_argument(
        "--warm", default="", help="comma-separated backends and model flavor to prepare for"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    mlflow_fail_fast()  # this loop retries on its own schedule
    run_dir: Path = args.run_dir
    warm = [w for w in args.warm.split(",") if w] or _backends_of(run_dir)
    # Hold the run's lock from the first moment: a sync by another exporter must not start
    # exporting this run while this one is still importing its clients.
    with run_lock(run_dir, wait=True):
        # Training comes first from the first moment: an idle core still runs all of this at
        # full speed, a busy machine gives it only what the training leaves.
        _yield_cpu()
        _prewarm(warm)
        try:
            # Once more when the runs exist: W&B's service, started by wandb.init, inherits
            # the policy, but a backend may start processes that reset it.
            result = _export_locked(run_dir, True, _yield_cpu, args.writer_pid)
        except JournalCorrupt as exc:
            log.error("%s", exc)  # `mltrail tracking sync` reports it too
            return 1
    if result == ABANDONED:
        # The process that reserved the run exited before starting it (a bad path, an error
        # while loading data): nothing was logged, so nothing is kept.
        shutil.rmtree(run_dir, ignore_errors=True)
        return 0
    log.info("export of %s: %s", run_dir.name, result)
    # Runs an earlier exporter could not finish (a backend was down, a process was killed).
    for name, other in sync(run_dir.parent).items():
        log.info("sync of %s: %s", name, other)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
