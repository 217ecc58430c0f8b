"""``mltrail train text|cifar10``: train a model under any tracker (the stages train_text_*
and train_cifar10_*)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.cli._common import ParamsArgs, params_parser, set_command

if TYPE_CHECKING:
    from mltrail.config import Params
    from mltrail.contracts.manifest import Manifest
    from mltrail.contracts.tasks import Flavor
    from mltrail.tracking.run import Reservation

NAME = "train"


@dataclass(frozen=True, kw_only=True)
class TrainArgs(ParamsArgs):
    data: Path
    out: Path
    tracker: str | None
    stage: str | None
    no_progress: bool


def _reserve(args: TrainArgs, params: Params, flavor: Flavor) -> Reservation:
    """Start the run's exporter before this process imports its training libraries."""
    from mltrail.tracking.run import reserve_run

    return reserve_run(args.tracker or "none", params.tracking, flavor)


def cmd_train_text(args: TrainArgs) -> int:
    params = args.load_params()
    tracker = _reserve(args, params, "sklearn")
    from mltrail.stages import train_text

    manifest = train_text.run(params, tracker, args.data, args.out, stage=args.stage)
    _print_metrics(manifest)
    return 0


def cmd_train_cifar10(args: TrainArgs) -> int:
    params = args.load_params()
    tracker = _reserve(args, params, "pytorch")
    from mltrail.stages import train_cifar10

    manifest = train_cifar10.run(
        params, tracker, args.data, args.out, not args.no_progress, stage=args.stage
    )
    _print_metrics(manifest)
    return 0


def _print_metrics(manifest: Manifest) -> None:
    print(", ".join(f"{k} {v:.4f}" for k, v in manifest.metrics.items()))


HELP = "train a model (stages train_text_*, train_cifar10_*)"
DESCRIPTION = """Train under any tracker: none, mlflow, wandb, several (mlflow,wandb) or an
MLflow tracking URI. Tracking never blocks training: runs are journalled and exported in
the background."""


def register(parser: argparse.ArgumentParser) -> None:
    task = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    trainer = argparse.ArgumentParser(add_help=False, parents=[params_parser()])
    trainer.add_argument("--data", type=Path, required=True, help="prepared data folder")
    trainer.add_argument("--out", type=Path, required=True, help="model folder (atomic)")
    trainer.add_argument(
        "--tracker", default=None, help="none (default), mlflow, wandb, mlflow,wandb, or a URI"
    )
    trainer.add_argument(
        "--stage",
        default=None,
        help="the DVC stage this is (dvc.yaml passes it), recorded in the manifest and the "
        "model's version; default train_TASK_TRACKER, the tracker none named baseline",
    )
    trainer.add_argument("--no-progress", action="store_true", help="no progress bars")
    text = task.add_parser("text", parents=[trainer], help="TF-IDF + logistic regression")
    set_command(text, TrainArgs, cmd_train_text)
    cifar10 = task.add_parser("cifar10", parents=[trainer], help="a CNN on CIFAR-10")
    set_command(cifar10, TrainArgs, cmd_train_cifar10)
