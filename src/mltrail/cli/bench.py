"""``mltrail bench``: what tracking costs, the matrix task x tracking condition x repetition
(the stage bench)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mltrail.cli._common import ParamsArgs, add_params, set_command

NAME = "bench"


@dataclass(frozen=True, kw_only=True)
class BenchArgs(ParamsArgs):
    out: Path
    work: Path
    preset: Literal["quick", "full"] | None
    repeats: int | None
    tasks: str | None
    report_only: bool
    no_progress: bool


def cmd_bench(args: BenchArgs) -> int:
    from mltrail.bench.matrix import rerender, run_bench
    from mltrail.config import BENCH_PRESETS
    from mltrail.tracking.registry import parse

    if args.report_only:
        for path in rerender(args.out):
            print(path)
        return 0
    params = args.load_params()
    update: dict[str, object] = dict(BENCH_PRESETS[args.preset]) if args.preset else {}
    if args.repeats is not None:
        update["repeats"] = args.repeats
    if args.tasks:
        update["tasks"] = [t.strip() for t in args.tasks.split(",")]
    bench = params.bench.model_validate(params.bench.model_dump() | update)
    for spec in bench.trackers:
        parse(spec, params.tracking)  # a wrong tracker fails now, not after an hour
    command = "mltrail bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else ""
    progress = not args.no_progress
    run_bench(params, bench, args.out, args.work, command or "mltrail bench", progress=progress)
    print(args.out / "benchmark.md")
    return 0


HELP = "measure what tracking costs: the paper's Tables 2-7 on this machine"
DESCRIPTION = """Run the matrix task x tracking condition x repetition (params.yaml `bench`),
each cell a fresh process; finished cells are kept and skipped on the next run. Writes
OUT/benchmark.{md,csv,json} and one chart per task."""


def register(parser: argparse.ArgumentParser) -> None:
    add_params(parser)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report folder")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(".mltrail/bench"),
        help="data, stores and finished cells (kept for resuming)",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="preset",
        help="IMDB 5,000 rows, CIFAR-10 5,000/1,000 images, one repetition (~3 min)",
    )
    preset.add_argument(
        "--full",
        action="store_const",
        const="full",
        dest="preset",
        help="all of IMDB and CIFAR-10, three repetitions (~30 min on 2 cores)",
    )
    parser.add_argument("--repeats", type=int, help="repetitions per cell (params: parser.repeats)")
    parser.add_argument("--tasks", help="comma-separated: text,cifar10 (params: parser.tasks)")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render OUT from OUT/benchmark.json"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    set_command(parser, BenchArgs, cmd_bench)
