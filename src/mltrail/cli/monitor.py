"""``mltrail monitor``: check the serving model (drift, live accuracy, latency SLO ->
ok/warn/retrain), or summarize a window of telemetry."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import ParamsArgs, add_params, set_command, telemetry_store
from mltrail.errors import MltrailError

NAME = "monitor"


@dataclass(frozen=True, kw_only=True)
class MonitorArgs(ParamsArgs):
    model: str | None
    out: Path | None
    retrain_exit_code: int
    store: str | None
    minutes: float | None
    endpoint: str | None
    limit: int
    json: bool
    summary_out: Path | None


def cmd_monitor(args: MonitorArgs) -> int:
    import json
    import time

    from mltrail.fsio import write_json
    from mltrail.monitor.summary import render_summary, summarize
    from mltrail.telemetry import read_window

    store = telemetry_store(args.store)
    if args.model is None:  # no model to test against: the summary of the window
        since = time.time() - args.minutes * 60 if args.minutes else None
        window = read_window(store, since=since, endpoint=args.endpoint, limit=args.limit)
        summary = summarize(window)
        if args.summary_out:
            write_json(args.summary_out, summary)
        print(json.dumps(summary, indent=2) if args.json else render_summary(summary))
        return 0
    if args.summary_out:
        raise MltrailError(
            "--summary-out writes the summary of a window (without --model)",
            hint="with --model, --out writes the check (check.json, report.html)",
        )
    from mltrail.monitor.run import monitored_model, run_check

    params = args.load_params()
    model = monitored_model(args.model)
    from mltrail.contracts.pointer import history_of

    history = history_of(Path(params.retrain.pointer_file))
    check = run_check(store, model, params.monitor, args.out, history)
    if args.json:
        print(json.dumps(check.as_dict(), indent=2))
    else:
        seen = f"{check.predictions} predictions in the window"
        print(f"{check.decision}: {model.task} model {model.version}, {seen}")
        for reason in check.reasons:
            print(f"  [{reason.level}] {reason.check}: {reason.message}")
        if args.out is not None:
            print(f"report: {args.out / 'report.html'}")
    return args.retrain_exit_code if check.decision == "retrain" else 0


HELP = "check the serving model: drift, live accuracy, latency SLO -> ok/warn/retrain"
DESCRIPTION = """With --model: test the newest `monitor.window` predictions of that model
(params.yaml `monitor`) against the reference it was trained with, decide ok / warn /
retrain, and write OUT/report.html, check.json, monitor.prom (Prometheus gauges) and a
line in OUT/decisions.jsonl. Without --model: summarize the window (volume, class mix,
confidence, latency, inputs, live accuracy); --json prints all of it."""


def register(parser: argparse.ArgumentParser) -> None:
    add_params(parser)
    parser.add_argument("--model", help="the serving model: folder, runs:/... or models:/...")
    parser.add_argument("--out", type=Path, help="report folder (with --model)")
    parser.add_argument(
        "--retrain-exit-code",
        type=int,
        default=0,
        help="exit status on a retrain decision (e.g. 3, for cron or CI; default 0)",
    )
    parser.add_argument(
        "--store",
        help="telemetry.db path, sqlite:///path or postgresql://... "
        "(default: $MLTRAIL_TELEMETRY_DSN, else telemetry.db)",
    )
    parser.add_argument("--minutes", type=float, help="only the last N minutes (summary)")
    parser.add_argument("--endpoint", help="only /predict/text or /predict/image (summary)")
    parser.add_argument("--limit", type=int, default=100_000, help="newest N predictions (summary)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON: the summary, or with --model the check (as check.json)",
    )
    parser.add_argument(
        "--summary-out", type=Path, metavar="PATH", help="also write the summary (JSON) here"
    )
    set_command(parser, MonitorArgs, cmd_monitor)
