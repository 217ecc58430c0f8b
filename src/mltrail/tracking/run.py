"""The run that training code holds: journals every call, never waits on a backend.

    with open_run("mlflow,wandb", settings, run_name="train_text_mlflow", task="text") as run:
        run.log_params(...)
        run.log_metrics({"accuracy": 0.9})
        run.log_model(ModelRef(...))

With trackers chosen, starting the run writes the journal's first line and starts the exporter
(``python -m mltrail.tracking.export``) as a detached process at idle CPU priority: it imports the
heavy clients while training runs, replays the journal into each backend as it grows, and
finishes the backend runs when the journal ends. Leaving the ``with`` block records the final
status: ``finished``, ``failed`` on an exception, ``killed`` on Ctrl-C or SIGTERM.

A command line that knows its tracker before it imports its own libraries calls
:func:`reserve_run` first and passes the reservation to ``open_run``: the exporter then starts
at once, and its imports (``import mlflow`` alone is about 1 s) overlap the training's own
imports instead of its fit, so the run is complete in the tracker sooner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from mltrail.config import TrackingParams
from mltrail.contracts.secrets import redact_spec, redact_uri
from mltrail.contracts.tasks import Flavor
from mltrail.tracking.base import ModelRef, Status
from mltrail.tracking.journal import JournalWriter, read_state
from mltrail.tracking.registry import BackendSpec, exporter_env, parse


@dataclass(frozen=True)
class Reservation:
    """A run's id, folder and backends, chosen before the run starts (see :func:`reserve_run`)."""

    spec: str
    """The tracker spec, its URIs' credentials redacted (it names the stage and the run)."""
    backends: list[BackendSpec]
    run_id: str
    run_dir: Path | None
    exporter_started: bool
    exporter_env: dict[str, str] = field(default_factory=dict, repr=False)
    """What the exporter needs in its environment to connect (a URI's credentials: see
    :func:`mltrail.tracking.registry.exporter_env`); never written down."""


def reserve_run(
    spec: str,
    settings: TrackingParams,
    flavor: Flavor | None = None,
    start_exporter: bool = True,
) -> Reservation:
    """Choose the run's id and folder; with ``start_exporter``, start its exporter now.

    An early exporter waits for the journal to begin, preparing meanwhile: it imports the
    chosen clients and, when MLflow is among them, what logging a ``flavor`` model needs.
    If this process exits before it opens the run, the exporter removes the empty folder.
    A wrong tracker name fails here, before anything is started.
    """
    backends = parse(spec, settings)
    run_id = uuid.uuid4().hex
    shown = redact_spec(spec)
    if not backends:
        return Reservation(shown, [], run_id, None, exporter_started=False)
    run_dir = Path(settings.journal_dir).resolve() / run_id
    run_dir.mkdir(parents=True)
    env = exporter_env(spec, settings)
    if start_exporter:
        warm = [b.name for b in backends] + ([flavor] if flavor else [])
        spawn_exporter(run_dir, writer_pid=os.getpid(), warm=warm, env=env)
    return Reservation(shown, backends, run_id, run_dir, start_exporter, env)


class TrackedRun:
    def __init__(
        self,
        reservation: Reservation,
        settings: TrackingParams,
        run_name: str,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.run_id = reservation.run_id
        self.backends = reservation.backends
        self.settings = settings
        self.run_name = run_name
        self.status: Status | None = None
        self.run_dir = reservation.run_dir
        self._journal: JournalWriter | None = None
        if self.run_dir is not None:
            self._journal = JournalWriter(self.run_dir)
            self._journal.append(
                "start",
                run_id=self.run_id,
                run_name=run_name,
                experiment=settings.experiment,
                tags=dict(tags or {}),
                pid=os.getpid(),
                host=os.uname().nodename,
                backends=[asdict(b) for b in self.backends],
                settings=settings.model_dump(mode="json")
                | {"mlflow_uri": redact_uri(settings.mlflow_uri)},
            )
            if not reservation.exporter_started:
                spawn_exporter(self.run_dir, env=reservation.exporter_env)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._journal:
            self._journal.append("params", values=dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._journal:
            values = {k: float(v) for k, v in metrics.items()}
            self._journal.append("metrics", values=values, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self._journal:
            self._journal.append("tags", values={k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path) -> None:
        if self._journal:
            self._journal.append("artifact", path=str(self._journal.keep_file(path)))

    def log_model(self, model: ModelRef) -> None:
        if self._journal:
            kept = self._journal.keep_file(model.path)
            record = asdict(model) | {"path": str(kept)}
            self._journal.append("model", **record)

    def end(self, status: Status) -> None:
        if self.status is not None:
            return
        self.status = status
        if self._journal:
            self._journal.append("end", status=status)
            self._journal.close()
        if self.settings.wait and self.run_dir is not None:
            wait_for_export(self.run_dir, [b.name for b in self.backends])

    def refs(self) -> dict[str, Any]:
        """Where this run will be found (the lineage manifest keeps this)."""
        return {
            "run_id": self.run_id,
            "journal": str(self.run_dir) if self.run_dir else None,
            "backends": {b.name: b.target for b in self.backends},
        }

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.end("finished")
        elif issubclass(kind, KeyboardInterrupt | SystemExit) and not _exited_ok(exc):
            self.end("killed")
        else:
            self.end("failed")


def _exited_ok(exc: BaseException | None) -> bool:
    return isinstance(exc, SystemExit) and exc.code in (0, None)


@contextmanager
def open_run(
    spec: str | Reservation,
    settings: TrackingParams,
    run_name: str,
    tags: Mapping[str, str] | None = None,
) -> Iterator[TrackedRun]:
    """A :class:`TrackedRun` for ``spec`` (or an earlier reservation); SIGTERM ends it as
    ``killed`` too."""
    if isinstance(spec, str):
        spec = reserve_run(spec, settings, start_exporter=False)
    run = TrackedRun(spec, settings, run_name, tags)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with run:
            yield run
    finally:
        signal.signal(signal.SIGTERM, previous)


def spawn_exporter(
    run_dir: Path,
    writer_pid: int | None = None,
    warm: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Start the exporter for ``run_dir``, detached: this process never waits for it.

    ``sh -c '... &'`` forks it off and returns at once, so it is nobody's child to reap, runs
    in its own session (Ctrl-C of the training does not reach it) and outlives training.
    ``writer_pid`` and ``warm``: for an exporter started before the journal begins (the
    process that will write it; what to prepare meanwhile). ``env``: added to its environment
    (credentials go there, never on its command line).
    """
    log = run_dir / "export.log"
    options = []
    if writer_pid is not None:
        options += ["--writer-pid", str(writer_pid)]
    if warm:
        options += ["--warm", ",".join(warm)]
    # Idle CPU priority from the first instruction (util-linux's chrt; without it the exporter
    # drops to idle itself once its interpreter is up), inherited by whatever it starts (W&B's
    # service): its imports overlap the training's, and on a busy machine they must take only
    # CPU the training does not want (see export._prewarm).
    command = (
        'log=$1; shift; idle=; command -v chrt >/dev/null 2>&1 && idle="chrt --idle 0"; '
        'exec $idle "$0" -m mltrail.tracking.export "$@" >>"$log" 2>&1 </dev/null &'
    )
    subprocess.run(
        ["sh", "-c", command, sys.executable, str(log), str(run_dir), *options],
        check=True,
        start_new_session=True,
        env={**os.environ, **env} if env else None,
    )


def wait_for_export(run_dir: Path, backends: list[str], timeout_s: float = 120.0) -> dict[str, Any]:
    """Block until every backend's export of ``run_dir`` is done or pending (given up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = {b: read_state(run_dir, b) for b in backends}
        if all(s is not None and s.get("status") in ("done", "pending") for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"the export of {run_dir} did not finish in {timeout_s:.0f} s")
        time.sleep(0.05)
