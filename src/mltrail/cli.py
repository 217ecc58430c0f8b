"""The ``mltrail`` command: one sub-command per verb; the only place that reads argv.

Paths come in as arguments (``dvc.yaml`` passes them), params from ``--params`` plus ``--set``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mltrail import __version__
from mltrail.config import MIRROR_ENV, Params, load_params
from mltrail.errors import MltrailError

if TYPE_CHECKING:
    from mltrail.contracts.manifest import Manifest
    from mltrail.contracts.tasks import Flavor
    from mltrail.tracking.run import Reservation

log = logging.getLogger("mltrail")

Handler = Callable[[argparse.Namespace], int]


def _params(args: argparse.Namespace) -> Params:
    return load_params(args.params, args.set)


def cmd_prepare_text(args: argparse.Namespace) -> int:
    from mltrail.stages import prepare_text

    prepare_text.run(_params(args), args.out, args.download_dir, progress=not args.no_progress)
    return 0


def cmd_prepare_cifar10(args: argparse.Namespace) -> int:
    from mltrail.stages import prepare_cifar10

    prepare_cifar10.run(_params(args), args.out, args.download_dir, progress=not args.no_progress)
    return 0


def _reserve(args: argparse.Namespace, params: Params, flavor: Flavor) -> Reservation:
    """Start the run's exporter before this process imports its training libraries."""
    from mltrail.tracking.run import reserve_run

    return reserve_run(args.tracker or "none", params.tracking, flavor)


def cmd_train_text(args: argparse.Namespace) -> int:
    params = _params(args)
    tracker = _reserve(args, params, "sklearn")
    from mltrail.stages import train_text

    manifest = train_text.run(params, tracker, args.data, args.out, stage=args.stage)
    _print_metrics(manifest)
    return 0


def cmd_train_cifar10(args: argparse.Namespace) -> int:
    params = _params(args)
    tracker = _reserve(args, params, "pytorch")
    from mltrail.stages import train_cifar10

    manifest = train_cifar10.run(
        params, tracker, args.data, args.out, not args.no_progress, stage=args.stage
    )
    _print_metrics(manifest)
    return 0


def _print_metrics(manifest: Manifest) -> None:
    print(", ".join(f"{k} {v:.4f}" for k, v in manifest.metrics.items()))


LINEAGE_MISMATCH = 2
"""``mltrail lineage`` exit status when a file the manifest hashes is missing or differs."""


def cmd_lineage(args: argparse.Namespace) -> int:
    import json

    from mltrail.tracking.lineage import lineage, render

    trail = lineage(args.model_dir)
    print(json.dumps(trail, indent=2) if args.json else render(trail))
    return 0 if trail["check"]["ok"] else LINEAGE_MISMATCH


def cmd_tracking_sync(args: argparse.Namespace) -> int:
    from mltrail.tracking.export import sync

    journal_dir = Path(_params(args).tracking.journal_dir)
    results = sync(journal_dir) if journal_dir.is_dir() else {}
    for run_id, states in results.items():
        print(f"{run_id}: " + ", ".join(f"{b} {s}" for b, s in states.items()))
    pending = [r for r, s in results.items() if "pending" in s.values()]
    print(f"{len(results)} run(s) to export, {len(pending)} still pending")
    return 1 if pending else 0


def cmd_tracking_server(args: argparse.Namespace) -> int:
    import shlex

    from mltrail.tracking.server import TrackingServer, run

    server = TrackingServer(
        backend_store_uri=args.backend_store_uri,
        artifacts_destination=args.artifacts,
        host=args.host,
        port=args.port,
        workers=args.workers,
        allowed_hosts=args.allowed_hosts,
    )
    if args.print:
        argv, env = server.command()
        print(" ".join([*(f"{k}={v}" for k, v in env.items()), *map(shlex.quote, argv)]))
        return 0
    run(server)
    return 0  # not reached: run() becomes the server


def cmd_clean_models(args: argparse.Namespace) -> int:
    from mltrail.stages.clean_models import clean_models

    params = _params(args)
    removed = clean_models(args.models_dir, args.pipeline, params.clean_models.keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} stale entries under {args.models_dir}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from mltrail.bench.matrix import rerender, run_bench
    from mltrail.config import BENCH_PRESETS
    from mltrail.tracking.registry import parse

    if args.report_only:
        for path in rerender(args.out):
            print(path)
        return 0
    params = _params(args)
    update: dict[str, object] = dict(BENCH_PRESETS[args.preset]) if args.preset else {}
    if args.repeats is not None:
        update["repeats"] = args.repeats
    if args.tasks:
        update["tasks"] = [t.strip() for t in args.tasks.split(",")]
    bench = params.bench.model_validate(params.bench.model_dump() | update)
    for spec in bench.trackers:
        parse(spec, params.tracking)  # a wrong tracker fails now, not after an hour
    command = "mltrail bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else ""
    run_bench(
        params, bench, args.out, args.work, command or "mltrail bench",
        progress=not args.no_progress,
    )  # fmt: skip
    print(args.out / "benchmark.md")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mltrail.serve.app import create_app
    from mltrail.serve.settings import load_settings

    settings = load_settings(
        args.settings,
        text_model=args.text_model,
        image_model=args.image_model,
        host=args.host,
        port=args.port,
    )
    pointer = Path(settings.pointer_file) if settings.pointer_file else None
    if not settings.text_model and not settings.image_model and not (pointer and pointer.is_file()):
        raise MltrailError(
            "no model to serve",
            hint="give --text-model and/or --image-model (a models/<task>/<tracker> folder), "
            "or a pointer_file that names them (mltrail promote writes one)",
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,  # per-request lines cost throughput; /metrics and telemetry count them
        timeout_graceful_shutdown=30,
        log_level="info",
    )
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    import os

    from mltrail.release.deploy import Release, Target, deploy
    from mltrail.telemetry import STORE_ENV

    target = Target(
        host=args.host, user=args.user, key=args.key, known_hosts=args.known_hosts,
        port=args.ssh_port, root=args.root,
    )  # fmt: skip
    env = {k: os.environ[k] for k in ("MLTRAIL_API_KEY", STORE_ENV) if k in os.environ}
    release = Release(
        tag=args.tag, runtime=args.runtime, text_model=args.text_model,
        image_model=args.image_model, image=args.image, python=args.python, env=env,
    )  # fmt: skip
    ports = tuple(int(p) for p in args.ports.split(","))
    if len(ports) != 2:
        raise MltrailError("--ports takes two ports, e.g. 8001,8002")
    record = deploy(target, release, (ports[0], ports[1]), args.timeout)
    print(f"deployed {record['tag']} on port {record['port']} (previous: {record['previous']})")
    return 0


def _telemetry_store(args: argparse.Namespace) -> str:
    """--store, else the default store (all absolute by now; see mltrail.telemetry)."""
    from mltrail.telemetry import default_store

    return str(args.store or default_store())


def cmd_monitor(args: argparse.Namespace) -> int:
    import json
    import time

    from mltrail.fsio import write_json
    from mltrail.monitor.summary import render_summary, summarize
    from mltrail.telemetry import read_window

    store = _telemetry_store(args)
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

    params = _params(args)
    model = monitored_model(args.model)
    check = run_check(store, model, params.monitor, args.out)
    if args.json:
        print(json.dumps(check.as_dict(), indent=2))
    else:
        print(f"{check.decision}: {model.task} model {model.version}, {check.predictions} "
              f"predictions in the window")  # fmt: skip
        for reason in check.reasons:
            print(f"  [{reason.level}] {reason.check}: {reason.message}")
        if args.out is not None:
            print(f"report: {args.out / 'report.html'}")
    return int(args.retrain_exit_code) if check.decision == "retrain" else 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import os
    import time

    from mltrail.release.retrain import retrain_once

    params = _params(args)
    store = _telemetry_store(args)
    while True:
        try:
            record = retrain_once(params, store, args.out, force=args.force, server=args.server,
                                  api_key=os.environ.get("MLTRAIL_API_KEY"))  # fmt: skip
            print(f"{record['outcome']} (record {record['id']} in {args.out / params.retrain.task}"
                  f"/loop.jsonl)")  # fmt: skip
        except MltrailError as exc:
            if not args.every:
                raise
            print(f"retrain pass failed, serving model untouched: {exc}", file=sys.stderr)
        if not args.every:
            return 0
        time.sleep(args.every)


def cmd_promote(args: argparse.Namespace) -> int:
    import os

    from mltrail.release.promote import promote, reload_server

    params = _params(args)
    record = promote(args.model, params, {"manual": True})
    print(f"promoted {record['task']} model {record['version']} -> {record['release']}")
    if record["registry"]:
        print(f"MLflow: {record['registry']['uri']} = version {record['registry']['version']}")
    if args.server:
        now = reload_server(args.server, record["task"], str(Path(record["release"]).resolve()),
                            os.environ.get("MLTRAIL_API_KEY"))  # fmt: skip
        print(f"{args.server} now serves {now}")
    return 0


def cmd_params_show(args: argparse.Namespace) -> int:
    params = _params(args)
    if args.json:
        import json

        print(json.dumps(params.model_dump(mode="json"), indent=2))
        return 0
    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    parser = build_parser()
    _complete_paths(parser, shtab.FILE)
    print(shtab.complete(parser, shell=args.shell), end="")
    return 0


def _complete_paths(parser: argparse.ArgumentParser, files: Any) -> None:
    """Let the shell complete file names wherever an argument is a path (shtab reads an
    action's ``complete`` attribute)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _complete_paths(sub, files)
        elif action.type is Path:
            action.complete = files  # type: ignore[attr-defined]


def cmd_init(args: argparse.Namespace) -> int:
    from mltrail.project import init_project

    made = init_project(args.dir, args.text_csv, args.text_column, args.label_column,
                        args.tracker, args.force)  # fmt: skip
    classes = made.summary.classes
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    print(f"made {made.path}: {made.summary.rows} rows of {made.data_file} (DVC-tracked), "
          f"{len(classes)} classes ({shown})")  # fmt: skip
    if not made.committed:
        print("git did not commit (set git's user.name and user.email); the files are staged: "
              "git commit -m 'mltrail init'")  # fmt: skip
    print(f"next: cd {args.dir} && dvc repro   (then see its README.md: lineage, serve, monitor)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mltrail",
        description="An end-to-end MLOps pipeline: versioned data, tracked training, serving, "
        "monitoring.",
    )
    parser.add_argument("--version", action="version", version=f"mltrail {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one param for this run, e.g. --set text.sample_rows=5000 (repeatable)",
    )

    data = argparse.ArgumentParser(add_help=False, parents=[common])
    data.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    data.add_argument(
        "--download-dir",
        type=Path,
        default=Path("data/raw"),
        help="where downloads are kept (default: %(default)s)",
    )
    data.add_argument("--no-progress", action="store_true", help="no progress bars")

    prepare = verbs.add_parser(
        "prepare",
        help="prepare a dataset (stages prepare_data_text, prepare_cifar10)",
        description=f"Fetch (path, mirror folder from ${MIRROR_ENV}, or URL), verify, clean "
        "and split a dataset.",
    )
    what = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    what.add_parser(
        "text",
        parents=[data],
        help="labelled text CSV or aclImdb archive -> train/test parquet + profile",
    ).set_defaults(handler=cmd_prepare_text)
    what.add_parser(
        "cifar10",
        parents=[data],
        help="CIFAR-10 python archive -> train/test NPZ in [0,1] + profile",
    ).set_defaults(handler=cmd_prepare_cifar10)

    train = verbs.add_parser(
        "train",
        help="train a model (stages train_text_*, train_cifar10_*)",
        description="Train under any tracker: none, mlflow, wandb, several (mlflow,wandb) or "
        "an MLflow tracking URI. Tracking never blocks training: runs are journalled and "
        "exported in the background.",
    )
    task = train.add_subparsers(dest="task", required=True, metavar="TASK")
    trainer = argparse.ArgumentParser(add_help=False, parents=[common])
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
    task.add_parser("text", parents=[trainer], help="TF-IDF + logistic regression").set_defaults(
        handler=cmd_train_text
    )
    task.add_parser("cifar10", parents=[trainer], help="a CNN on CIFAR-10").set_defaults(
        handler=cmd_train_cifar10
    )

    lineage = verbs.add_parser(
        "lineage",
        help="print a model's trail: commit to tracker runs; check its files",
        description="Print the manifest's chain (commit, params, data, model, tracker runs, "
        "promotions) and check every file of the model folder the manifest hashes (the model, "
        "its ONNX copy, its monitoring reference). Exit status: 0 when they all match, "
        f"{LINEAGE_MISMATCH} when one is missing or differs, 1 on an error (no manifest).",
    )
    lineage.add_argument("model_dir", type=Path)
    lineage.add_argument(
        "--json", action="store_true", help="print the manifest and the check as JSON"
    )
    lineage.set_defaults(handler=cmd_lineage)

    tracking = verbs.add_parser("tracking", help="tracking journal tools")
    tracking_what = tracking.add_subparsers(dest="what", required=True, metavar="WHAT")
    tracking_what.add_parser(
        "sync", parents=[common], help="export runs whose export did not finish (backend down)"
    ).set_defaults(handler=cmd_tracking_sync)
    server = tracking_what.add_parser(
        "server",
        help="run a team's MLflow tracking server (PostgreSQL store, served artifacts)",
        description="Creates the PostgreSQL database if needed, then runs `mlflow server` with "
        "it as the backend store, artifacts served from --artifacts, no job runner. Clients "
        "point at it with one setting: tracking.mlflow_uri: http://HOST:PORT.",
    )
    server.add_argument(
        "--backend-store-uri", default="postgresql://postgres@127.0.0.1:5432/mlflow"
    )
    server.add_argument("--artifacts", type=Path, default=Path("mlartifacts"))
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=int, default=2)
    server.add_argument(
        "--allowed-hosts", help="Host headers to accept (MLflow's default: its own)"
    )
    server.add_argument(
        "--print", action="store_true", help="print the command instead of running it"
    )
    server.set_defaults(handler=cmd_tracking_server)

    clean = verbs.add_parser("clean", help="remove stale outputs (stage clean_models)")
    clean_what = clean.add_subparsers(dest="what", required=True, metavar="WHAT")
    models = clean_what.add_parser(
        "models",
        parents=[common],
        help="remove model folders that no stage in dvc.yaml produces, and leftovers",
    )
    models.add_argument("--models-dir", type=Path, default=Path("models"))
    models.add_argument("--pipeline", type=Path, default=Path("dvc.yaml"))
    models.add_argument("--dry-run", action="store_true", help="list, do not remove")
    models.set_defaults(handler=cmd_clean_models)

    bench = verbs.add_parser(
        "bench",
        parents=[common],
        help="measure what tracking costs: the paper's Tables 2-7 on this machine",
        description="Run the matrix task x tracking condition x repetition (params.yaml "
        "`bench`), each cell a fresh process; finished cells are kept and skipped on the next "
        "run. Writes OUT/benchmark.{md,csv,json} and one chart per task.",
    )
    bench.add_argument("--out", type=Path, default=Path("reports"), help="report folder")
    bench.add_argument(
        "--work",
        type=Path,
        default=Path(".mltrail/bench"),
        help="data, stores and finished cells (kept for resuming)",
    )
    preset = bench.add_mutually_exclusive_group()
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
    bench.add_argument("--repeats", type=int, help="repetitions per cell (params: bench.repeats)")
    bench.add_argument("--tasks", help="comma-separated: text,cifar10 (params: bench.tasks)")
    bench.add_argument(
        "--report-only", action="store_true", help="re-render OUT from OUT/benchmark.json"
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=cmd_bench)

    serve = verbs.add_parser(
        "serve",
        help="serve models over HTTP (FastAPI + uvicorn), with telemetry and /metrics",
        description="Settings come from --settings (YAML; or $MLTRAIL_SERVE_SETTINGS), the "
        "environment (MLTRAIL_TEXT_MODEL, MLTRAIL_IMAGE_MODEL, MLTRAIL_API_KEY, "
        "MLTRAIL_IMAGE_TAG, MLTRAIL_POINTER_FILE), then these options.",
    )
    serve.add_argument("--settings", type=Path, help="server settings file (YAML)")
    serve.add_argument("--text-model", help="model folder, runs:/... or models:/name@alias")
    serve.add_argument("--image-model", help="model folder, runs:/... or models:/name@alias")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 80 in the container)")
    serve.set_defaults(handler=cmd_serve)

    verbs.add_parser(
        "dvc",
        help="run DVC with SSH host keys checked (dvc-ssh accepts any host key otherwise)",
        description="mltrail dvc ARGS... is `dvc ARGS...` with SSH remotes verifying the "
        "server against ~/.ssh/known_hosts (or $MLTRAIL_KNOWN_HOSTS).",
        add_help=False,
    )

    dep = verbs.add_parser(
        "deploy",
        help="deploy a release over SSH: start beside the old, health gate, switch or roll back",
        description="Blue/green on two ports of the host; SSH checks the host key against "
        "--known-hosts. MLTRAIL_API_KEY and MLTRAIL_TELEMETRY_DSN are passed on from this "
        "environment. Exits non-zero after a rollback.",
    )
    dep.add_argument("--host", required=True)
    dep.add_argument("--user", required=True)
    dep.add_argument("--key", type=Path, required=True, help="SSH private key")
    dep.add_argument("--known-hosts", type=Path, required=True, help="the pinned host key")
    dep.add_argument("--ssh-port", type=int, default=22)
    dep.add_argument("--root", default="/srv/mltrail", help="release folder on the host")
    dep.add_argument("--tag", required=True, help="release tag (the image tag)")
    dep.add_argument("--runtime", choices=["process", "docker"], default="docker")
    dep.add_argument("--image", default="mltrail", help="docker: the image, without its tag")
    dep.add_argument("--text-model", type=Path, help="process: model folder to ship")
    dep.add_argument("--image-model", type=Path, help="process: model folder to ship")
    dep.add_argument("--python", default="python3", help="process: interpreter on the host")
    dep.add_argument("--ports", default="8001,8002", help="the two blue/green ports")
    dep.add_argument("--timeout", type=float, default=60, help="health gate, seconds")
    dep.set_defaults(handler=cmd_deploy)

    mon = verbs.add_parser(
        "monitor",
        parents=[common],
        help="check the serving model: drift, live accuracy, latency SLO -> ok/warn/retrain",
        description="With --model: test the newest `monitor.window` predictions of that model "
        "(params.yaml `monitor`) against the reference it was trained with, decide ok / warn "
        "/ retrain, and write OUT/report.html, check.json, monitor.prom (Prometheus gauges) "
        "and a line in OUT/decisions.jsonl. Without --model: summarize the window (volume, "
        "class mix, confidence, latency, inputs, live accuracy); --json prints all of it.",
    )
    mon.add_argument("--model", help="the serving model: folder, runs:/... or models:/...")
    mon.add_argument("--out", type=Path, help="report folder (with --model)")
    mon.add_argument(
        "--retrain-exit-code",
        type=int,
        default=0,
        help="exit status on a retrain decision (e.g. 3, for cron or CI; default 0)",
    )
    mon.add_argument(
        "--store",
        help="telemetry.db path, sqlite:///path or postgresql://... "
        "(default: $MLTRAIL_TELEMETRY_DSN, else telemetry.db)",
    )
    mon.add_argument("--minutes", type=float, help="only the last N minutes (summary)")
    mon.add_argument("--endpoint", help="only /predict/text or /predict/image (summary)")
    mon.add_argument("--limit", type=int, default=100_000, help="newest N predictions (summary)")
    mon.add_argument(
        "--json", action="store_true",
        help="print JSON: the summary, or with --model the check (as check.json)",
    )  # fmt: skip
    mon.add_argument(
        "--summary-out", type=Path, metavar="PATH", help="also write the summary (JSON) here"
    )
    mon.set_defaults(handler=cmd_monitor)

    ret = verbs.add_parser(
        "retrain",
        parents=[common],
        help="close the loop: check, add labelled feedback, dvc repro, evaluate, promote",
        description="One pass (params.yaml `retrain`): check the serving model; on a retrain "
        "decision (or --force) add the labelled production inputs as a DVC-tracked feedback "
        "batch, `dvc repro` the serving stage, compare the candidate with the serving model on "
        "the test split and on held-out feedback, and promote it only if it is better "
        "(release copy, MLflow alias, pointer file; the server reloads). Every step goes to "
        "OUT/<task>/loop.jsonl. The API key for --server comes from $MLTRAIL_API_KEY.",
    )
    ret.add_argument("--store", help="telemetry store (default: $MLTRAIL_TELEMETRY_DSN, "
                     "else telemetry.db)")  # fmt: skip
    ret.add_argument("--out", type=Path, default=Path("monitoring"), help="reports and records")
    ret.add_argument("--force", action="store_true", help="retrain whatever the check decides")
    ret.add_argument("--server", help="a server to reload at once, e.g. http://127.0.0.1:8000")
    ret.add_argument("--every", type=float, help="repeat every N seconds (a scheduled loop)")
    ret.set_defaults(handler=cmd_retrain)

    pro = verbs.add_parser(
        "promote",
        parents=[common],
        help="make a model folder the serving one (release copy, MLflow alias, pointer)",
    )
    pro.add_argument("model", type=Path, help="a folder written by mltrail train")
    pro.add_argument("--server", help="a server to reload at once")
    pro.set_defaults(handler=cmd_promote)

    params = verbs.add_parser("params", help="inspect params")
    params_what = params.add_subparsers(dest="what", required=True, metavar="WHAT")
    show = params_what.add_parser(
        "show", parents=[common], help="print the validated params, overrides applied"
    )
    show.add_argument("--json", action="store_true", help="as JSON (default: YAML)")
    show.set_defaults(handler=cmd_params_show)

    completion = verbs.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh)",
        description="Print the completion script for mltrail's verbs and options. Install it "
        "once, e.g. bash: mltrail completion bash > "
        "~/.local/share/bash-completion/completions/mltrail; zsh: mltrail completion zsh > "
        '"${fpath[1]}/_mltrail".',
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    completion.set_defaults(handler=cmd_completion)
    init = verbs.add_parser(
        "init",
        help="start a project of your own: a DVC pipeline that trains on your labelled CSV",
        description="Make DIR a git + DVC project (params.yaml, dvc.yaml, a local DVC remote, "
        ".gitignore, README.md) whose `dvc repro` trains a text classifier on a copy of your "
        "CSV, versioned by DVC; then serve, monitor and retrain it with mltrail as here. The "
        "CSV is checked first, and a failed init leaves nothing behind.",
    )
    init.add_argument("dir", type=Path, help="the project folder (new, or empty)")
    init.add_argument("--text-csv", type=Path, required=True, help="labelled CSV with a header")
    init.add_argument("--text-column", required=True, help="the column holding the texts")
    init.add_argument("--label-column", required=True, help="the column holding the classes")
    init.add_argument(
        "--tracker",
        choices=["none", "mlflow", "wandb", "mlflow,wandb"],
        default="mlflow",
        help="where the training stage tracks its runs (default: %(default)s, in mlflow.db)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="re-make DIR if mltrail init made it and it has not run",
    )
    init.set_defaults(handler=cmd_init)
    return parser


def _absolute_arguments(args: argparse.Namespace) -> None:
    """Every path given on the command line, made absolute against the working directory
    (see mltrail.paths): the stores and folders a command hands to other processes."""
    from mltrail.paths import absolute, absolute_store

    for name, value in vars(args).items():
        if isinstance(value, Path):
            setattr(args, name, absolute(value))
    if getattr(args, "store", None):
        args.store = absolute_store(args.store)


def main(argv: Sequence[str] | None = None) -> int:
    from mltrail.paths import resolve_environment

    argv = list(sys.argv[1:] if argv is None else argv)
    # Before anything runs in another folder or process: relative paths in MLTRAIL_* mean
    # "relative to where the command was typed" (mltrail.paths).
    resolve_environment()
    if argv[:1] == ["dvc"]:  # DVC's own arguments, untouched: see mltrail.data.remote
        from mltrail.data.remote import dvc

        try:
            return dvc(argv[1:])
        except MltrailError as exc:
            print(f"mltrail: error: {exc}", file=sys.stderr)
            return 1
    args = build_parser().parse_args(argv)
    _absolute_arguments(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except MltrailError as exc:
        print(f"mltrail: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mltrail: interrupted; no partial outputs were kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
