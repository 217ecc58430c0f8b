"""``mltrail prepare text|cifar10``: fetch, verify, clean and split a dataset (the stages
prepare_data_text and prepare_cifar10)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import ParamsArgs, params_parser, set_command
from mltrail.paths import MIRROR_ENV

NAME = "prepare"


@dataclass(frozen=True, kw_only=True)
class PrepareArgs(ParamsArgs):
    out: Path
    download_dir: Path
    no_progress: bool


def cmd_prepare_text(args: PrepareArgs) -> int:
    from mltrail.stages.prepare_text import run

    run(args.load_params(), args.out, args.download_dir, progress=not args.no_progress)
    return 0


def cmd_prepare_cifar10(args: PrepareArgs) -> int:
    from mltrail.stages.prepare_cifar10 import run

    run(args.load_params(), args.out, args.download_dir, progress=not args.no_progress)
    return 0


HELP = "prepare a dataset (stages prepare_data_text, prepare_cifar10)"
DESCRIPTION = f"""Fetch (path, mirror folder from ${MIRROR_ENV}, or URL), verify, clean and
split a dataset."""


def register(parser: argparse.ArgumentParser) -> None:
    data = argparse.ArgumentParser(add_help=False, parents=[params_parser()])
    data.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    data.add_argument(
        "--download-dir",
        type=Path,
        default=Path("data/raw"),
        help="where downloads are kept (default: %(default)s)",
    )
    data.add_argument("--no-progress", action="store_true", help="no progress bars")
    what = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    text = what.add_parser(
        "text",
        parents=[data],
        help="labelled text CSV or aclImdb archive -> train/test parquet + profile",
    )
    set_command(text, PrepareArgs, cmd_prepare_text)
    cifar10 = what.add_parser(
        "cifar10",
        parents=[data],
        help="CIFAR-10 python archive -> train/test NPZ in [0,1] + profile",
    )
    set_command(cifar10, PrepareArgs, cmd_prepare_cifar10)
