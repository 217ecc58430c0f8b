"""``mltrail retrain``: close the loop once (or every N seconds): check, add labelled
feedback, dvc repro, evaluate, promote."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import (
    ParamsArgs,
    add_params,
    admin_key,
    set_command,
    telemetry_store,
)
from mltrail.errors import MltrailError

NAME = "retrain"


@dataclass(frozen=True, kw_only=True)
class RetrainArgs(ParamsArgs):
    store: str | None
    out: Path
    force: bool
    server: str | None
    every: float | None


def cmd_retrain(args: RetrainArgs) -> int:
    import time

    from mltrail.release.retrain import retrain_once

    params = args.load_params()
    store = telemetry_store(args.store)
    records = args.out / params.retrain.task / "loop.jsonl"
    while True:
        try:
            record = retrain_once(
                params,
                store,
                args.out,
                force=args.force,
                server=args.server,
                api_key=admin_key(),
            )
            print(f"{record['outcome']} (record {record['id']} in {records})")
        except MltrailError as exc:
            if not args.every:
                raise
            print(f"retrain pass failed, serving model untouched: {exc}", file=sys.stderr)
        if not args.every:
            return 0
        time.sleep(args.every)


HELP = "close the loop: check, add labelled feedback, dvc repro, evaluate, promote"
DESCRIPTION = """One pass (params.yaml `retrain`): check the serving model; on a retrain
decision (or --force) add the labelled production inputs as a DVC-tracked feedback
batch, `dvc repro` the serving stage, compare the candidate with the serving model on
the test split and on held-out feedback, and promote it only if it is better (release
copy, MLflow alias, pointer file; the server reloads). Every step goes to
OUT/<task>/loop.jsonl. The key for --server's reload comes from $MLTRAIL_ADMIN_API_KEY,
else $MLTRAIL_API_KEY."""


def register(parser: argparse.ArgumentParser) -> None:
    add_params(parser)
    parser.add_argument(
        "--store", help="telemetry store (default: $MLTRAIL_TELEMETRY_DSN, else telemetry.db)"
    )
    parser.add_argument("--out", type=Path, default=Path("monitoring"), help="reports and records")
    parser.add_argument("--force", action="store_true", help="retrain whatever the check decides")
    parser.add_argument("--server", help="a server to reload at once, e.g. http://127.0.0.1:8000")
    parser.add_argument("--every", type=float, help="repeat every N seconds (a scheduled loop)")
    set_command(parser, RetrainArgs, cmd_retrain)
