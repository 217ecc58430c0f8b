"""``mltrail init DIR``: start a project of one's own, a DVC pipeline that trains on a
labelled CSV."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from mltrail.cli._common import Args, set_command

NAME = "init"

Tracker = Literal["none", "mlflow", "wandb", "mlflow,wandb"]
"""As ``mltrail.project.TRACKERS`` (a test keeps them the same)."""


@dataclass(frozen=True, kw_only=True)
class InitArgs(Args):
    dir: Path
    text_csv: Path
    text_column: str
    label_column: str
    tracker: Tracker
    force: bool


def cmd_init(args: InitArgs) -> int:
    from mltrail.project import init_project

    made = init_project(
        args.dir, args.text_csv, args.text_column, args.label_column, args.tracker, args.force
    )
    classes = made.summary.classes
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    print(
        f"made {made.path}: {made.summary.rows} rows of {made.data_file} (DVC-tracked), "
        f"{len(classes)} classes ({shown})"
    )
    if not made.committed:
        print(
            "git did not commit (set git's user.name and user.email); the files are staged: "
            "git commit -m 'mltrail init'"
        )
    print(f"next: cd {args.dir} && dvc repro   (then see its README.md: lineage, serve, monitor)")
    return 0


HELP = "start a project of your own: a DVC pipeline that trains on your labelled CSV"
DESCRIPTION = """Make DIR a git + DVC project (params.yaml, dvc.yaml, a local DVC remote,
.gitignore, README.md) whose `dvc repro` trains a text classifier on a copy of your CSV,
versioned by DVC; then serve, monitor and retrain it with mltrail as here. The CSV is
checked first, and a failed init leaves nothing behind."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="the project folder (new, or empty)")
    parser.add_argument("--text-csv", type=Path, required=True, help="labelled CSV with a header")
    parser.add_argument("--text-column", required=True, help="the column holding the texts")
    parser.add_argument("--label-column", required=True, help="the column holding the classes")
    parser.add_argument(
        "--tracker",
        choices=get_args(Tracker),
        default="mlflow",
        help="where the training stage tracks its runs (default: %(default)s, in mlflow.db)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-make DIR if mltrail init made it and it has not run",
    )
    set_command(parser, InitArgs, cmd_init)
