"""``mltrail init DIR``: a project of the user's own, on the user's own labelled CSV.

What it writes (templates in ``mltrail/templates/project/``, shipped in the wheel):

- ``params.yaml``: the sections a text project uses (data, text, train_text, tracking, monitor,
  retrain), validated with :func:`mltrail.config.load_params` before anything is kept;
- ``dvc.yaml``: ``prepare_data_text`` and one training stage for the chosen tracker
  (``train_text_baseline`` for none, ``train_text_mlflow``, ...). The stages depend on the data
  and the params, not on mltrail's source files: those are an installed package here, not
  files of the project (the manifest records the mltrail version that trained a model);
- ``data/raw/<csv>``: a copy of the CSV, ``dvc add``-ed. The data is versioned like the
  repository's (its ``.dvc`` file in git, the bytes in the DVC cache and remote), and the
  pipeline never reads a file outside the project that could change or vanish unnoticed.
  ``text.source.path_sha256`` holds its checksum, so ``prepare`` refuses a copy edited without
  ``dvc add`` (a model trained on bytes that no cache or remote holds could never be rebuilt);
- a git repository with DVC in it: ``.dvc/config`` with a default local remote ``dvc-remote/``
  in the project (ignored by git, as in the repository; ``dvc remote modify`` points it
  elsewhere), ``.gitignore``, a short ``README.md``, ``data/feedback/text/`` for the retrain
  loop, and a first commit when git knows who the user is.

The CSV is checked before anything is written (file, columns, at least two classes, the same
cleaning and stratified split the pipeline will run), and the project is built in a temporary
folder beside DIR and moved into place only when complete: a failed init leaves nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from mltrail import __version__
from mltrail.config import load_params
from mltrail.contracts.tasks import task_spec, tracker_name, train_stage
from mltrail.errors import DataError, MltrailError
from mltrail.fsio import sha256_file, write_json

log = logging.getLogger(__name__)

TRACKERS = ("none", "mlflow", "wandb", "mlflow,wandb")
"""``--tracker`` choices. Each names its training stage ``train_text_<name>`` and its model
folder ``models/text/<name>`` (:func:`mltrail.contracts.tasks.tracker_name`: ``none`` is the
paper's baseline, ``mlflow,wandb`` is ``mlflow_wandb``)."""
TASK = task_spec("text")

TEMPLATES = {  # template -> where it goes in the project
    "params.yaml": "params.yaml",
    "dvc.yaml": "dvc.yaml",
    "README.md": "README.md",
    "gitignore": ".gitignore",
    "feedback-README.md": "data/feedback/text/README.md",
}
MARKER = ".mltrail/init.json"
"""What ``mltrail init`` made (ignored by git): how ``--force`` tells a project it made."""
REMOTE_DIR = "dvc-remote"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CsvSummary:
    rows: int
    classes: list[str]


@dataclass(frozen=True)
class Project:
    path: Path
    stage: str
    model_dir: str
    data_file: str
    """The CSV's copy, relative to the project."""
    summary: CsvSummary
    committed: bool
    """False when git could not commit (no user.name / user.email): the files are staged."""


def model_dir(tracker: str) -> str:
    """The project's model folder for ``tracker``, named like its training stage."""
    return f"models/{TASK.task}/{tracker_name(tracker)}"


def template_text(name: str) -> str:
    return resources.files("mltrail").joinpath(f"templates/project/{name}").read_text("utf-8")


def safe_name(name: str, fallback: str) -> str:
    """``name`` with anything but letters, digits, ``.``, ``_`` and ``-`` made ``_``: a file
    name that needs no quoting in YAML, in shells, in MLflow and W&B project names."""
    cleaned = _SAFE.sub("_", name).strip("._") or fallback
    return cleaned


def check_csv(path: Path, text_column: str, label_column: str) -> CsvSummary:
    """Read ``path`` as the pipeline will and check it can train a classifier: the columns
    exist, there are at least two classes, and the pipeline's own cleaning and stratified
    split run on it. Raises :class:`DataError` saying what to change."""
    import pandas as pd

    from mltrail.config import DataSource, TextParams
    from mltrail.data.text import LABEL, read_text_csv
    from mltrail.stages.prepare_text import prepare_text

    if not path.is_file():
        raise DataError(
            f"{path}: no such file",
            hint="--text-csv takes a CSV file with a header (gzip, bz2, xz or zip allowed)",
        )
    if text_column == label_column:
        raise DataError(f"--text-column and --label-column are both {text_column!r}")
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0, encoding_errors="replace").columns]
    except (ValueError, OSError, EOFError, zlib.error):
        columns = None  # not readable: read_text_csv below says why
    if columns is not None:
        for flag, column in (("--text-column", text_column), ("--label-column", label_column)):
            if column not in columns:
                raise DataError(
                    f"{path} has no column {column!r} (given as {flag}); its columns are {columns}",
                    hint=f"pass the name of the column that holds the "
                    f"{'texts' if flag == '--text-column' else 'classes'}: {flag} NAME",
                )
    raw = read_text_csv(path, text_column, label_column, "replace")
    labels = raw[LABEL].str.strip()
    counts = labels[labels != ""].value_counts()
    if len(counts) < 2:
        found = f"one class ({counts.index[0]!r})" if len(counts) else "no labels"
        raise DataError(
            f"the label column {label_column!r} of {path} holds {found}; a classifier needs "
            "at least two",
            hint="is --label-column the column of classes? add rows of the other classes",
        )
    rare = counts[counts < 2]
    if len(rare):
        shown = ", ".join(repr(str(c)[:40]) for c in rare.index[:5])
        raise DataError(
            f"{len(rare)} of the {len(counts)} classes in {label_column!r} have a single row "
            f"({shown}{', ...' if len(rare) > 5 else ''}); a stratified train/test split needs "
            "at least 2 rows of every class",
            hint="is --label-column the column of classes (not the texts)? otherwise drop or "
            "merge those rows",
        )
    section = TextParams(
        source=DataSource(path=str(path)), text_column=text_column, label_column=label_column
    )
    prepared = prepare_text(raw, section)  # the pipeline's cleaning and split, on this data
    return CsvSummary(rows=len(raw), classes=prepared.classes)


def _check_tools(tracker: str) -> None:
    if shutil.which("git") is None:
        raise MltrailError(
            "git is not installed",
            hint="install git: the project is a git repository, and every model records the "
            "commit it was trained from",
        )
    needed = {"dvc": "pipeline"} | {b: b for b in tracker.split(",") if b != "none"}
    missing = {pkg: extra for pkg, extra in needed.items() if importlib.util.find_spec(pkg) is None}
    if missing:
        extras = ",".join(sorted(set(missing.values())))
        raise MltrailError(
            f"not installed: {', '.join(missing)} (needed by a project with --tracker {tracker})",
            hint=f"pip install 'mltrail[{extras}]'"
            + (", or choose --tracker none" if set(missing) - {"dvc"} else ""),
        )
    if shutil.which("mltrail") is None:
        log.warning("`mltrail` is not on PATH: `dvc repro` runs it; activate its environment")


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise MltrailError(f"{target} exists and is not a folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    fresh = (target / MARKER).is_file() and not (target / "dvc.lock").exists()
    if not force:
        raise MltrailError(
            f"{target} is not empty",
            hint="choose a new folder (mltrail init creates it)"
            + ("; --force re-makes this project, which has not run yet" if fresh else ""),
        )
    if not (target / MARKER).is_file():
        raise MltrailError(
            f"{target} is not empty and was not made by mltrail init: --force never replaces it",
            hint="choose a new folder",
        )
    if not fresh:
        raise MltrailError(
            f"{target} has run its pipeline (dvc.lock exists): --force only re-makes a "
            "project that has not run yet",
            hint="remove the folder yourself if you mean to lose its models and data cache",
        )


def render(
    name: str,
    *,
    data_file: str,
    sha256: str,
    text_column: str,
    label_column: str,
    tracker: str,
    summary: CsvSummary,
) -> dict[str, str]:
    """The project's text files, by path relative to the project (no file access)."""
    values = {
        "name": name,
        "experiment": safe_name(name, "mltrail"),
        "csv_name": Path(data_file).name,
        "csv_path": data_file,
        "csv_sha256": sha256,
        # JSON strings are YAML scalars: any column name, quoted as needed
        "text_column": json.dumps(text_column),
        "label_column": json.dumps(label_column),
        "text_name": text_column,
        "label_name": label_column,
        "tracker": tracker,
        "stage": train_stage(TASK.task, tracker),
        "model_dir": model_dir(tracker),
        "n_rows": f"{summary.rows:,}",
        "n_classes": str(len(summary.classes)),
    }
    return {
        dest: Template(template_text(src)).substitute(values) for src, dest in TEMPLATES.items()
    }


def _run(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise MltrailError(f"{what} failed ({' '.join(args)}):\n{result.stderr.strip()}")
    return result


def _dvc(project: Path, *args: str) -> None:
    """DVC's own command line, in this process (one import instead of one per command);
    ``--cd`` changes the working directory, which is restored."""
    from dvc.cli import main

    cwd = Path.cwd()
    try:
        code = main(["--cd", str(project), *args])
    finally:
        os.chdir(cwd)
    if code != 0:
        raise MltrailError(f"dvc {' '.join(args)} failed (exit {code}); its message is above")


@contextlib.contextmanager
def _building(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target``, moved into place only on success. An existing
    ``target`` (empty, or a fresh project re-made with --force) keeps its folder, which may be
    the user's working directory: its entries are swapped for the new ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".init", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # a plain mkdir's permissions, not mkdtemp's 0700
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        for entry in list(target.iterdir()):
            os.replace(entry, old / entry.name)
        for entry in list(tmp.iterdir()):
            os.replace(entry, target / entry.name)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def init_project(
    target: Path,
    text_csv: Path,
    text_column: str,
    label_column: str,
    tracker: str = "mlflow",
    force: bool = False,
) -> Project:
    """Make the project ``target`` on ``text_csv`` (see the module's docstring)."""
    if tracker not in TRACKERS:
        raise MltrailError(f"unknown tracker {tracker!r}", hint=f"one of {', '.join(TRACKERS)}")
    target = target.expanduser().absolute()
    text_csv = text_csv.expanduser().absolute()
    _check_target(target, force)
    _check_tools(tracker)
    summary = check_csv(text_csv, text_column, label_column)
    data_file = f"data/raw/{safe_name(text_csv.name, 'data.csv')}"
    sha256 = sha256_file(text_csv)
    files = render(
        target.name,
        data_file=data_file,
        sha256=sha256,
        text_column=text_column,
        label_column=label_column,
        tracker=tracker,
        summary=summary,
    )
    with _building(target) as tmp:
        (tmp / data_file).parent.mkdir(parents=True)
        shutil.copyfile(text_csv, tmp / data_file)
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8")
        load_params(tmp / "params.yaml")  # what dvc repro will read: valid, or nothing is kept
        _run(["git", "init", "-q"], tmp, "git init")
        _dvc(tmp, "init", "-q")
        _dvc(tmp, "config", "core.autostage", "true")  # dvc add / repro stage their files in git
        _dvc(tmp, "config", "core.analytics", "false")  # nothing leaves the machine unasked
        _dvc(tmp, "remote", "add", "local", REMOTE_DIR)  # stored as ../dvc-remote (from .dvc/)
        _dvc(tmp, "config", "core.remote", "local")  # the default (quieter than add -d)
        _dvc(tmp, "add", "-q", data_file)
        write_json(
            tmp / MARKER,
            {
                "made_by": f"mltrail init (mltrail {__version__})",
                "csv": str(text_csv),
                "sha256": sha256,
                "text_column": text_column,
                "label_column": label_column,
                "tracker": tracker,
                "rows": summary.rows,
                "classes": summary.classes,
            },
        )
        _run(["git", "add", "-A"], tmp, "git add")
        commit = subprocess.run(
            ["git", "commit", "-q", "-m", f"mltrail init: a text classifier on {text_csv.name}"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
    if commit.returncode != 0:
        log.warning("git did not commit: %s", (commit.stderr or commit.stdout).strip())
    return Project(
        target,
        train_stage(TASK.task, tracker),
        model_dir(tracker),
        data_file,
        summary,
        committed=commit.returncode == 0,
    )
