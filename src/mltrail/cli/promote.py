"""``mltrail promote MODEL``: make a model folder the serving one (release copy, MLflow alias,
pointer file), and reload a server at once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import ParamsArgs, add_params, admin_key, set_command

NAME = "promote"


@dataclass(frozen=True, kw_only=True)
class PromoteArgs(ParamsArgs):
    model: Path
    server: str | None


def cmd_promote(args: PromoteArgs) -> int:
    from mltrail.release.promote import promote, reload_server

    record = promote(args.model, args.load_params(), {"manual": True})
    print(f"promoted {record['task']} model {record['version']} -> {record['release']}")
    if record["registry"]:
        print(f"MLflow: {record['registry']['uri']} = version {record['registry']['version']}")
    if args.server:
        release = str(Path(record["release"]).resolve())
        now = reload_server(args.server, record["task"], release, admin_key())
        print(f"{args.server} now serves {now}")
    return 0


HELP = "make a model folder the serving one (release copy, MLflow alias, pointer)"


def register(parser: argparse.ArgumentParser) -> None:
    add_params(parser)
    parser.add_argument("model", type=Path, help="a folder written by mltrail train")
    parser.add_argument(
        "--server",
        help="a server to reload at once (key: $MLTRAIL_ADMIN_API_KEY, else $MLTRAIL_API_KEY)",
    )
    set_command(parser, PromoteArgs, cmd_promote)
