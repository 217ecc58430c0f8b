"""``mltrail params show``: the validated params, ``--set`` overrides applied."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mltrail.cli._common import ParamsArgs, params_parser, set_command

NAME = "params"


@dataclass(frozen=True, kw_only=True)
class ShowArgs(ParamsArgs):
    json: bool


def cmd_params_show(args: ShowArgs) -> int:
    shown = args.load_params().model_dump(mode="json")
    if args.json:
        import json

        print(json.dumps(shown, indent=2))
        return 0
    import yaml

    print(yaml.safe_dump(shown, sort_keys=False), end="")
    return 0


HELP = "inspect params"


def register(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    show = what.add_parser(
        "show", parents=[params_parser()], help="print the validated params, overrides applied"
    )
    show.add_argument("--json", action="store_true", help="as JSON (default: YAML)")
    set_command(show, ShowArgs, cmd_params_show)
