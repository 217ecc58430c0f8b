"""``mltrail runs list|show|compare``: every run across the journal, MLflow and W&B, one table;
one run with where each value came from; what changed between two runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mltrail.cli._common import ParamsArgs, params_parser, set_command

if TYPE_CHECKING:
    from mltrail.tracking.run_sources import Gap
    from mltrail.tracking.runs import Merged

NAME = "runs"

RUNS_PARTIAL = 2
"""Exit status when a tool (or one of its runs) could not be read: what was read is shown,
each gap named on stderr (and under ``unreachable`` in --json)."""

Status = Literal["finished", "failed", "killed", "running"]
TrackerName = Literal["mlflow", "wandb"]


@dataclass(frozen=True, kw_only=True)
class ListArgs(ParamsArgs):
    task: str | None
    stage: str | None
    tracker: TrackerName | None
    status: Status | None
    since: str | None
    json: bool


@dataclass(frozen=True, kw_only=True)
class ShowArgs(ParamsArgs):
    run: str
    json: bool


@dataclass(frozen=True, kw_only=True)
class CompareArgs(ParamsArgs):
    a: str
    b: str
    json: bool


def _collect(args: ParamsArgs) -> tuple[list[Merged], list[Gap]]:
    from mltrail.tracking.runs import collect

    return collect(args.load_params().tracking)


def _finish(payload: dict[str, Any], text: str, as_json: bool, gaps: Sequence[Gap]) -> int:
    """Print ``payload`` (--json) or ``text``; name each gap on stderr; the exit status."""
    import json
    import sys

    if as_json:
        payload["unreachable"] = [
            {"tool": g.tool, "target": g.target, "error": g.error} for g in gaps
        ]
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)
    for gap in gaps:
        print(f"mltrail: {gap.line()}", file=sys.stderr)
    return RUNS_PARTIAL if gaps else 0


def cmd_runs_list(args: ListArgs) -> int:
    from mltrail.tracking.runs import Filters, parse_since, row, select
    from mltrail.tracking.runs_text import table

    filters = Filters(
        task=args.task,
        stage=args.stage,
        tracker=args.tracker,
        status=args.status,
        since=parse_since(args.since) if args.since else None,
    )
    runs, gaps = _collect(args)
    rows = [row(r, gaps) for r in select(runs, filters)]
    return _finish({"runs": rows}, table(rows), args.json, gaps)


def cmd_runs_show(args: ShowArgs) -> int:
    from mltrail.tracking.runs import detail, find
    from mltrail.tracking.runs_text import show

    runs, gaps = _collect(args)
    found = detail(find(runs, args.run), gaps)
    return _finish(found, show(found), args.json, gaps)


def cmd_runs_compare(args: CompareArgs) -> int:
    from mltrail.tracking.runs import compare, find
    from mltrail.tracking.runs_text import changes

    runs, gaps = _collect(args)
    diff = compare(find(runs, args.a), find(runs, args.b))
    return _finish(diff, changes(diff), args.json, gaps)


HELP = "every run across the journal, MLflow and W&B: list, show, compare"
DESCRIPTION = f"""Reads the run journal (tracking.journal_dir), every MLflow store a run was
sent to (MLflow's client) and W&B's local run folders (W&B's reader of .wandb logs), and
merges them by mltrail's run id. A tool that cannot be read (a server down) is named on
stderr with its error and the rest is shown. Exit status: 0 when every tool was read,
{RUNS_PARTIAL} when one could not be, 1 on an error (an unknown run, a bad --since)."""


def register(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    common = argparse.ArgumentParser(add_help=False, parents=[params_parser()])
    common.add_argument("--json", action="store_true", help="print JSON (docs/tracking.md)")
    listing = what.add_parser(
        "list",
        parents=[common],
        help="one table of every run: trackers, ids, status, hashes, headline metrics",
    )
    listing.add_argument("--task", help="only runs of this task (text, cifar10)")
    listing.add_argument("--stage", help="only runs of this stage (train_text_mlflow, ...)")
    listing.add_argument("--tracker", choices=["mlflow", "wandb"], help="only runs sent there")
    listing.add_argument(
        "--status", choices=["finished", "failed", "killed", "running"], help="only these"
    )
    listing.add_argument(
        "--since", help="only runs started since a date (2026-12-01) or an age (12h, 7d)"
    )
    set_command(listing, ListArgs, cmd_runs_list)
    show = what.add_parser(
        "show",
        parents=[common],
        help="one run, merged: each value with the sources that state it; disagreements",
    )
    show.add_argument("run", help="mltrail run id, an MLflow or W&B run id, or a unique prefix")
    set_command(show, ShowArgs, cmd_runs_show)
    comparing = what.add_parser(
        "compare",
        parents=[common],
        help="two runs: params changed, metric deltas (B - A), data and code changes",
    )
    comparing.add_argument("a", help="the earlier run (id or prefix)")
    comparing.add_argument("b", help="the later run (id or prefix)")
    set_command(comparing, CompareArgs, cmd_runs_compare)
