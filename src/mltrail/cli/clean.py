"""``mltrail clean models``: remove what under models/ no stage produces (the stage
clean_models)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import ParamsArgs, params_parser, set_command

NAME = "clean"


@dataclass(frozen=True, kw_only=True)
class CleanModelsArgs(ParamsArgs):
    models_dir: Path
    pipeline: Path
    dry_run: bool


def cmd_clean_models(args: CleanModelsArgs) -> int:
    from mltrail.stages.clean_models import clean_models

    keep = args.load_params().clean_models.keep
    removed = clean_models(args.models_dir, args.pipeline, keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} stale entries under {args.models_dir}")
    return 0


HELP = "remove stale outputs (stage clean_models)"


def register(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    models = what.add_parser(
        "models",
        parents=[params_parser()],
        help="remove model folders that no stage in dvc.yaml produces, and leftovers",
    )
    models.add_argument("--models-dir", type=Path, default=Path("models"))
    models.add_argument("--pipeline", type=Path, default=Path("dvc.yaml"))
    models.add_argument("--dry-run", action="store_true", help="list, do not remove")
    set_command(models, CleanModelsArgs, cmd_clean_models)
