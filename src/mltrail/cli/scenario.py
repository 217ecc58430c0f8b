"""``mltrail scenario``: the loop end to end on CIFAR-10 (serve, drift, detect, retrain,
promote, recover) in a scratch copy of this project."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from mltrail.cli._common import Args, Subparsers, set_command

NAME = "scenario"

Shift = Literal["darken", "noise", "rotate"]


@dataclass(frozen=True, kw_only=True)
class ScenarioArgs(Args):
    shift: Shift
    out: Path
    work: Path
    train_size: int
    epochs: int


def cmd_scenario(args: ScenarioArgs) -> int:
    from mltrail.monitor.scenario import run_scenario

    result = run_scenario(
        Path.cwd(),
        args.out,
        args.work,
        shift=args.shift,
        train_size=args.train_size,
        epochs=args.epochs,
    )
    acc = result["served_accuracy"]
    print(
        f"in-distribution {acc['in-distribution']:.3f}, shifted {acc['shifted']:.3f}, "
        f"after retrain {acc['after retrain']:.3f}; loop: {result['loop']['outcome']}"
    )
    print(f"report: {args.out / 'scenario.md'}")
    return 0 if result["promoted"] and result["recovered"] else 1


def register(verbs: Subparsers) -> None:
    sce = verbs.add_parser(
        NAME,
        help="the loop end to end on CIFAR-10: serve, drift, detect, retrain, promote, recover",
        description="""In a scratch copy of this project (--work): train and promote the CNN, serve
        it, send labelled CIFAR-10 traffic, shift it, let the monitor decide, run the retrain
        loop, and measure the recovery. Needs the dataset (MLTRAIL_DATA_MIRROR or a download).
        Writes OUT/scenario.md, scenario.json, timeline.png, report.html.""",
    )
    sce.add_argument("--shift", choices=get_args(Shift), default="darken")
    sce.add_argument("--out", type=Path, default=Path("reports/scenario"))
    sce.add_argument("--work", type=Path, default=Path(".mltrail/scenario"))
    sce.add_argument("--train-size", type=int, default=20_000, help="CIFAR-10 training images")
    sce.add_argument("--epochs", type=int, default=3)
    set_command(sce, ScenarioArgs, cmd_scenario)
