"""What each place that holds a run says about it, read through that place's own means: the
journal (``tracking.journal_dir``), MLflow (``MlflowClient``) and W&B's offline run files
(``wandb leet inspect``, W&B's reader of ``.wandb`` logs). :mod:`mltrail.tracking.runs` merges
these records; nothing here merges or judges.

Each reader returns :class:`SourceRun` records and :class:`Gap` entries: a tool that could not
be read (a server down, a store missing, a run file W&B cannot parse) is one gap with its
error, never an exception, so the others are still shown.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mltrail.contracts.layout import MANIFEST_FILE
from mltrail.contracts.manifest import Manifest, ManifestError
from mltrail.tracking.journal import JOURNAL, JournalCorrupt, all_records, read_state, writer_alive

MLFLOW_RUN_ID_TAG = "mltrail.run_id"  # mltrail.tracking.mlflow_backend.RUN_ID_TAG (no mlflow here)
_STATUS_BY_EXIT_CODE = {0: "finished", 1: "failed", 130: "killed"}  # wandb_backend's codes


@dataclass
class SourceRun:
    """One run as one source records it. ``fields`` holds what the sources share (``stage``,
    ``task``, ``status``, ``start``, ``end``, ``commit``, ``data_sha256``, ``model_sha256``,
    ``params_sha256``), absent when the source does not record it."""

    source: str
    """``journal``, ``manifest`` (the model's manifest kept in the journal), ``mlflow``,
    ``wandb``."""
    run_id: str
    """mltrail's run id (the journal's; MLflow's tag ``mltrail.run_id``; W&B's run id)."""
    fields: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tool: dict[str, Any] = field(default_factory=dict)
    """The tool's own view: its run id, where the run is (URL, URI, folder), its raw status;
    for the journal, the trackers the run was sent to and each export's state."""


@dataclass(frozen=True)
class Gap:
    """A tool (or one of its runs) that could not be read: which, where, and the error."""

    tool: str
    target: str
    error: str

    def line(self) -> str:
        return f"{self.tool} ({self.target}) could not be read: {self.error}"


@dataclass
class Read:
    runs: list[SourceRun] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def add(self, other: Read) -> None:
        self.runs += other.runs
        self.gaps += other.gaps


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error as one line a person can read (MLflow's are many lines with a traceback)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return first if len(first) <= limit else first[: limit - 3] + "..."


# --- the journal -------------------------------------------------------------------------


def read_journal(journal_dir: Path) -> Read:
    """Every run folder under ``journal_dir``: the journal's record and, when the run logged a
    model, its manifest's (as a second source: it is what the model folder says)."""
    read = Read()
    for run_dir in sorted(p.parent for p in journal_dir.glob(f"*/{JOURNAL}")):
        try:
            records = all_records(run_dir)
        except JournalCorrupt as exc:
            read.gaps.append(Gap("journal", str(run_dir), exc.message))
            continue
        if records and records[0]["op"] == "start":
            read.runs += _journal_runs(run_dir, records)
    return read


def _journal_runs(run_dir: Path, records: list[dict[str, Any]]) -> list[SourceRun]:
    start = records[0]
    run = SourceRun("journal", start["run_id"])
    tags: dict[str, str] = dict(start.get("tags", {}))
    model: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    for record in records[1:]:
        op = record["op"]
        if op == "params":
            run.params.update(record["values"])
        elif op == "metrics":
            run.metrics.update(record["values"])  # the last value of each, as the tools show
        elif op == "tags":
            tags.update(record["values"])
        elif op == "model":
            model = record
        elif op == "end":
            end = record
    run.fields = _drop_none(
        stage=start.get("run_name"),
        task=tags.get("task"),
        status=end["status"] if end else ("running" if writer_alive(start) else "failed"),
        start=start["time"],
        end=end["time"] if end else None,
        commit=tags.get("git_commit"),
        data_sha256=tags.get("data_sha256"),
        model_sha256=model["sha256"] if model else None,
    )
    backends = {b["name"]: b["target"] for b in start.get("backends", [])}
    run.tool = {
        "run_dir": str(run_dir),
        "experiment": start.get("experiment"),
        "backends": backends,
        "exports": {name: read_state(run_dir, name) for name in backends},
        "wandb_dir": (start.get("settings") or {}).get("wandb_dir"),
    }
    manifest = _manifest_run(run.run_id, Path(model["path"])) if model else None
    return [run, manifest] if manifest else [run]


def _manifest_run(run_id: str, model_dir: Path) -> SourceRun | None:
    """What the model's manifest (kept with the run) records; None without a readable one."""
    try:
        manifest = Manifest.read(model_dir)  # the typed contract: older schemas upgraded
    except (ManifestError, OSError):
        return None
    return SourceRun(
        "manifest",
        run_id,
        fields=_drop_none(
            stage=manifest.stage,
            task=manifest.task,
            commit=manifest.git.commit,
            dirty=manifest.git.dirty,
            data_sha256=manifest.data.content_sha256,
            model_sha256=manifest.model.sha256,
            params_sha256=manifest.params_sha256,
        ),
        # The manifest's params are the stage's section, nested; the trackers get them flat.
        params=_flatten(manifest.params),
        metrics=dict(manifest.metrics),
        tool={"manifest": str(model_dir / MANIFEST_FILE)},
    )


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# --- MLflow --------------------------------------------------------------------------------


def read_mlflow(targets: Iterable[str], required: Iterable[str] = ()) -> Read:
    """Every run tagged ``mltrail.run_id`` in each MLflow store (``targets``: recorded, i.e.
    redacted, tracking URIs). A SQLite store whose file does not exist is not created: it is
    a gap when a run was sent there (``required``), else skipped."""
    read = Read()
    needed = set(required)
    for target in dict.fromkeys(targets):
        missing = _missing_sqlite_file(target)
        if missing is not None:
            if target in needed:
                read.gaps.append(Gap("mlflow", target, f"no store at {missing}"))
            continue
        read.add(_read_mlflow_store(target))
    return read


def _missing_sqlite_file(target: str) -> Path | None:
    if not target.startswith("sqlite:///"):
        return None
    path = Path(target.removeprefix("sqlite:///").split("?", 1)[0])
    return None if path.is_file() else path


def _read_mlflow_store(target: str) -> Read:
    from mltrail.tracking.registry import connect_uri, hide, mlflow_fail_fast

    mlflow_fail_fast(timeout_s=5)  # a server that is down is reported in seconds
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=connect_uri(target))
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        found = _search_all(client, list(experiments))
    except Exception as exc:  # any failure of one tool is a gap, never the end of the listing
        return Read(gaps=[Gap("mlflow", target, hide(one_line(exc), target))])
    return Read(runs=[_mlflow_run(target, run, experiments) for run in found])


def _search_all(client: Any, experiment_ids: list[str]) -> list[Any]:
    if not experiment_ids:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=f"tags.`{MLFLOW_RUN_ID_TAG}` LIKE '%'",
            max_results=1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _mlflow_run(target: str, run: Any, experiments: Mapping[str, str]) -> SourceRun:
    info, data = run.info, run.data
    tags = dict(data.tags)
    experiment = str(info.experiment_id)
    if target.startswith(("http://", "https://")):
        url = f"{target.rstrip('/')}/#/experiments/{experiment}/runs/{info.run_id}"
    else:
        url = f"runs:/{info.run_id}"
    return SourceRun(
        "mlflow",
        tags[MLFLOW_RUN_ID_TAG],
        fields=_drop_none(
            stage=info.run_name,
            task=tags.get("task"),
            status=str(info.status).lower(),
            start=info.start_time / 1000 if info.start_time else None,
            end=info.end_time / 1000 if info.end_time else None,
            commit=tags.get("git_commit"),
            data_sha256=tags.get("data_sha256"),
        ),
        params=dict(data.params),
        metrics=dict(data.metrics),
        tool={
            "run_id": info.run_id,
            "url": url,
            "status": str(info.status),
            "tracking_uri": target,
            "experiment": experiments.get(experiment, experiment),
        },
    )


# --- W&B -----------------------------------------------------------------------------------


def wandb_run_dirs(wandb_dirs: Iterable[Path], known: Iterable[Path] = ()) -> list[Path]:
    """W&B's local run folders: ``<dir>/wandb/{offline-run,run}-*`` of each W&B folder, and
    folders an export recorded (``known``)."""
    found = [
        p
        for d in dict.fromkeys(wandb_dirs)
        for pattern in ("offline-run-*", "run-*")
        for p in (d / "wandb").glob(pattern)
    ]
    found += [p for p in known if p.is_dir()]
    return sorted({p.resolve() for p in found if list(p.glob("run-*.wandb"))})


def read_wandb(run_dirs: list[Path]) -> Read:
    """Each local W&B run folder, read by W&B's own reader of ``.wandb`` transaction logs.

    W&B 0.31 writes offline runs as one ``.wandb`` log (no ``config.yaml`` or
    ``wandb-summary.json`` any more) and its Python SDK has no reader of that log (the old
    ``wandb.sdk.internal.datastore`` is gone); its reader is ``wandb leet inspect --summary
    --json``, which runs W&B's ``wandb-core`` binary. That binary is called here directly,
    with the arguments ``wandb leet inspect`` gives it (wandb/cli/leet.py): going through
    the ``wandb`` command costs about 1.2 s of Python start-up per run, the binary 0.25 s.
    """
    if not run_dirs:
        return Read()
    core = _wandb_core()
    if core is None:
        return Read(gaps=[Gap("wandb", "*", "the wandb package is missing")])
    read = Read()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for item in pool.map(lambda d: _read_wandb_run(core, d), run_dirs):
            if isinstance(item, Gap):
                read.gaps.append(item)
            else:
                read.runs.append(item)
    return read


def _wandb_core() -> Path | None:
    """W&B's ``wandb-core`` binary, found as ``wandb.util.get_core_path`` finds it (its package
    folder's ``bin/``) without importing wandb (0.6 s)."""
    spec = importlib.util.find_spec("wandb")
    if spec is None or not spec.submodule_search_locations:
        return None
    core = Path(next(iter(spec.submodule_search_locations))) / "bin" / "wandb-core"
    return core if core.is_file() else None


def _read_wandb_run(core: Path, run_dir: Path) -> SourceRun | Gap:
    (log,) = run_dir.glob("run-*.wandb")
    command = [str(core), "leet", "inspect", "--no-observability", "--summary", "--json"]
    command += ["--run-file", str(log), str(run_dir.parent)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        summary: dict[str, Any] = json.loads(out.stdout)
    except subprocess.CalledProcessError as exc:
        return Gap("wandb", str(run_dir), one_line(exc.stderr or str(exc)))
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
        return Gap("wandb", str(run_dir), one_line(exc))
    return _wandb_run(run_dir, summary)


def _wandb_run(run_dir: Path, summary: Mapping[str, Any]) -> SourceRun:
    tags = dict(t.split("=", 1) for t in summary.get("tags") or [] if "=" in t)
    code = summary.get("exit_code")
    status = _STATUS_BY_EXIT_CODE.get(code) if isinstance(code, int) else None
    config = {k: v for k, v in (summary.get("config") or {}).items() if k != "_wandb"}
    values = summary.get("summary") or {}
    metrics = {
        k: float(v)
        for k, v in values.items()
        if not k.startswith("_") and isinstance(v, int | float) and not isinstance(v, bool)
    }
    return SourceRun(
        "wandb",
        str(summary.get("run_id") or run_dir.name.rsplit("-", 1)[-1]),
        fields=_drop_none(
            stage=summary.get("name") or None,
            task=tags.get("task"),
            status=status or summary.get("state"),
            commit=tags.get("git_commit"),
            data_sha256=tags.get("data_sha256"),
        ),
        params=config,
        metrics=metrics,
        tool={
            "run_id": summary.get("run_id"),
            "url": str(run_dir),
            "status": summary.get("state"),
            "exit_code": code,
            "project": summary.get("project"),
            # W&B's start is when the exporter began the run, not when training did.
            "start_time": _iso_seconds(summary.get("start_time")),
        },
    )


def _iso_seconds(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None
