"""The whole loop, scripted, on real data (CIFAR-10), in a scratch copy of the project.

    MLTRAIL_DATA_MIRROR=/path/to/datasets python benchmarks/scenario.py [--shift darken]


1. ``dvc repro`` the serving stage (prepare + train, tracked in MLflow) and promote the model;
2. start ``mltrail serve`` with input capture, and send in-distribution traffic (CIFAR-10 test
   images the model never saw: not in its test split either), half of it labelled through
   ``POST /feedback``; the monitor says ok;
3. the traffic shifts (``--shift``: images darkened, noised or rotated); the monitor checks
   every 50 predictions until it decides ``retrain``;
4. ``mltrail retrain``'s pass: the labelled shifted inputs become a DVC-tracked batch, the
   stages re-run, the candidate is compared with the serving model and promoted, and the
   server reloads it;
5. more shifted traffic: the accuracy the server reaches on it recovers.

Writes OUT/scenario.{md,json}, OUT/timeline.png and the monitor's last report.html (OUT:
``reports/scenario`` by default; the scratch copy: ``.mltrail/scenario``). Exits non-zero when
the loop did not close (no retrain decision, no promotion, no recovery). About 4 minutes on 2
cores. A demo harness, not library code: it changes directory into the copy and puts this
interpreter's ``bin`` first on PATH (the DVC stages run ``mltrail``), and puts both back.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from mltrail.contracts.tasks import kind_spec
from mltrail.errors import MltrailError
from mltrail.fsio import atomic_write_text, write_json
from mltrail.telemetry import DEFAULT_STORE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, copy_project, free_port, machine, set_params

log = logging.getLogger(__name__)
SHIFTS: dict[str, Callable[[NDArray[np.uint8]], NDArray[np.uint8]]] = {
    # N x 3 x 32 x 32 uint8 -> the same, shifted
    "darken": lambda x: (x.astype(np.float32) * 0.4).astype(np.uint8),
    "noise": lambda x: np.clip(x + np.random.default_rng(0).normal(0, 40, x.shape), 0, 255).astype(
        np.uint8
    ),
    "rotate": lambda x: np.ascontiguousarray(np.rot90(x, k=1, axes=(2, 3))),
}
BATCH = 10  # images per request
IMAGE_ENDPOINT = kind_spec("image").endpoint


@dataclass
class Traffic:
    """What the server answered, phase by phase."""

    phases: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    served: list[tuple[str, int, int, str]] = field(default_factory=list)
    """(phase, predicted, true label, model version) per prediction, in order."""

    def accuracy(self, phase: str) -> float:
        rows = [(p, y) for ph, p, y, _ in self.served if ph == phase]
        return float(np.mean([p == y for p, y in rows])) if rows else float("nan")


def _pool(project: Path, params: Any) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """CIFAR-10 test images outside the prepared test split: never seen, never evaluated on."""
    from mltrail.data.cifar10 import read_cifar10_archive
    from mltrail.data.split import stratified_subset
    from mltrail.stages.common import fetch_source

    cifar = params.cifar10_section()
    source = fetch_source(params, cifar.source, project / "data/raw", progress=False)
    arrays = read_cifar10_archive(source.path)
    used = stratified_subset(
        arrays.y_test, cifar.test_size, cifar.seed, "cifar10.test_size", arrays.classes
    )
    free = np.setdiff1d(np.arange(len(arrays.y_test)), used)
    order = np.random.default_rng(7).permutation(free)
    return arrays.x_test[order], arrays.y_test[order]


@contextlib.contextmanager
def inside(project: Path) -> Iterator[None]:
    """Work in ``project`` with this interpreter's ``bin`` first on PATH (the DVC stages run
    ``mltrail``); the working directory and PATH are put back afterwards, also on errors."""
    path = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), path]))
    try:
        with contextlib.chdir(project):
            yield
    finally:
        if path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path


@contextlib.contextmanager
def serving(project: Path, release: str, port: int) -> Iterator[str]:
    """``mltrail serve`` of ``release`` with input capture, in ``project``: its URL once ready;
    stopped on leaving."""
    import httpx

    settings = {
        "image_model": release,
        "port": port,
        "capture_inputs": 1.0,
        "pointer_file": str(project / "releases/serving.json"),
        "telemetry": {"sqlite_path": str(project / DEFAULT_STORE)},
    }
    (project / "serve.yaml").write_text(yaml.safe_dump(settings))
    log_path = project / "server.log"
    argv = [sys.executable, "-m", "mltrail", "serve", "--settings", "serve.yaml"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, cwd=project, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise MltrailError(f"the server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise MltrailError("the server did not become ready in 120 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _send(
    client: Any,
    traffic: Traffic,
    phase: str,
    x: NDArray[np.uint8],
    y: NDArray[np.int64],
    label_share: float,
    rng: np.random.Generator,
) -> None:
    for start in range(0, len(y), BATCH):
        images = x[start : start + BATCH].transpose(0, 2, 3, 1)  # HWC, 0-255: the API's layout
        r = client.post(IMAGE_ENDPOINT, json={"images": images.tolist()})
        if r.status_code != 200:
            raise MltrailError(f"{IMAGE_ENDPOINT} answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        for prediction, label in zip(body["predictions"], y[start : start + BATCH], strict=True):
            traffic.served.append((phase, prediction["label"], int(label), body["model_version"]))
            if rng.random() < label_share:
                client.post(
                    "/feedback",
                    json={"prediction_id": prediction["prediction_id"], "label": int(label)},
                )


def _plot(traffic: Traffic, path: Path, shift: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = 50
    rows = traffic.served
    xs, acc = [], []
    for i in range(0, len(rows) - step + 1, step):
        chunk = rows[i : i + step]
        xs.append(i + step)
        acc.append(np.mean([p == y for _, p, y, _ in chunk]))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(xs, acc, "o-", color="#1565c0", label=f"served accuracy (per {step} predictions)")
    starts: dict[str, int] = {}
    for i, (phase, *_rest) in enumerate(rows):
        starts.setdefault(phase, i)
    colors = {"in-distribution": "#e8f5e9", "shifted": "#fff3e0", "after retrain": "#e3f2fd"}
    bounds = [*starts.values(), len(rows)]
    for (phase, start), end in zip(starts.items(), bounds[1:], strict=True):
        ax.axvspan(start, end, color=colors.get(phase, "#eeeeee"), alpha=0.8)
        ax.text(start + 5, 0.03, phase, fontsize=8)
    for event in traffic.events:
        ax.axvline(
            event["at"], color="#c62828" if event["what"] == "retrain" else "#2e7d32", ls="--", lw=1
        )
        ax.text(event["at"] + 3, 0.95, event["what"], fontsize=8, rotation=90, va="top")
    ax.set_ylim(0, 1)
    ax.set_xlabel("prediction number")
    ax.set_ylabel("accuracy")
    ax.set_title(f"mltrail scenario: CIFAR-10 traffic {shift}, detected, retrained, promoted")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _phase(name: str, check: Any, **extra: Any) -> dict[str, Any]:
    return {
        "phase": name,
        "check": check.decision,
        **extra,
        "reasons": [r.message for r in check.reasons],
    }


def run_scenario(
    repo: Path,
    out: Path,
    work: Path,
    shift: str = "darken",
    train_size: int = 20_000,
    epochs: int = 3,
    phase_size: int = 400,
    labelled_shifted: int = 600,
    port: int | None = None,
    label_share: float = 0.5,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The scenario; returns (and writes) its record."""
    import httpx

    from mltrail.config import load_params
    from mltrail.contracts.pointer import Pointer
    from mltrail.monitor.run import monitored_model, run_check
    from mltrail.release.promote import promote
    from mltrail.release.retrain import retrain_once

    started = time.time()
    project = (work / "project").resolve()
    out = out.resolve()
    copy_project(repo, project)
    set_params(
        project,
        {
            "cifar10": {"train_size": train_size, "test_size": 2000, "feedback_repeat": 4},
            "train_cifar10": {"epochs": epochs},
            "tracking": {"wait": True},
            "retrain": {
                "task": "cifar10",
                "stage": "train_cifar10_mlflow",
                "registered_model": "mltrail-cifar10",
            },
        },
    )
    if overrides:
        set_params(project, overrides)
    traffic = Traffic()
    rng = np.random.default_rng(0)
    store = str(project / DEFAULT_STORE)
    monitoring = out / "monitoring"
    if monitoring.exists():
        shutil.rmtree(monitoring)
    checks = monitoring / "cifar10"  # where `mltrail retrain --out monitoring` looks
    with inside(project):
        params = load_params(project / "params.yaml")
        t = time.time()
        repro = [sys.executable, "-m", "dvc", "repro", "train_cifar10_mlflow"]
        subprocess.run(repro, check=True, capture_output=True)
        traffic.events.append({"what": "trained", "at": 0, "seconds": time.time() - t})
        first = promote(project / "models/cifar10/mlflow", params, {"scenario": "initial"})
        release = str(Path(first["release"]).resolve())
        x, y = _pool(project, params)
        with (
            serving(project, release, port or free_port()) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            logging.getLogger("httpx").setLevel(logging.WARNING)
            rows = slice(0, phase_size)
            _send(client, traffic, "in-distribution", x[rows], y[rows], label_share, rng)
            time.sleep(1.0)  # the telemetry writer flushes every 0.2 s
            served = monitored_model(release)
            phases = [_phase("in-distribution", run_check(store, served, params.monitor, checks))]
            cursor = phase_size
            shifted_x = SHIFTS[shift](x[phase_size:])
            shifted_y = y[phase_size:]
            detected_after = None
            sent = 0
            # Enough shifted traffic for the labels to be worth learning from.
            enough = int(labelled_shifted / label_share)
            while sent < enough + 1000:
                rows = slice(sent, sent + 50)
                _send(
                    client, traffic, "shifted", shifted_x[rows], shifted_y[rows], label_share, rng
                )
                sent += 50
                time.sleep(0.5)
                check = run_check(store, served, params.monitor, checks)
                if check.decision == "retrain" and detected_after is None:
                    detected_after = sent
                    traffic.events.append({"what": "retrain", "at": cursor + sent})
                    phases.append(_phase("shifted", check, detected_after=sent))
                if detected_after is not None and sent >= enough:
                    break
            if detected_after is None:
                raise MltrailError(
                    f"the monitor did not decide retrain within {sent} shifted predictions"
                )
            time.sleep(1.0)
            t = time.time()
            record = retrain_once(params, store, monitoring, server=url)
            loop_seconds = time.time() - t
            what = "promoted" if record["outcome"].startswith("promoted") else "not promoted"
            traffic.events.append({"what": what, "at": cursor + sent})
            rows = slice(sent, sent + phase_size)
            _send(
                client, traffic, "after retrain", shifted_x[rows], shifted_y[rows], label_share, rng
            )
            time.sleep(1.0)
            promoted = monitored_model(str(Pointer.read(Path(params.retrain.pointer_file)).image))
            final = run_check(store, promoted, params.monitor, checks)
            phases.append(_phase("after retrain", final))
    accuracy = {p: traffic.accuracy(p) for p in ("in-distribution", "shifted", "after retrain")}
    recovered = accuracy["after retrain"] > accuracy["shifted"] + 0.05
    result = {
        "shift": shift,
        "train_size": train_size,
        "epochs": epochs,
        "label_share": label_share,
        "shifted_predictions_before_retrain": sent,
        "served_accuracy": accuracy,
        "detected_after_shifted_predictions": detected_after,
        "loop": record,
        "loop_seconds": loop_seconds,
        "phases": phases,
        "recovered": recovered,
        "promoted": record["outcome"].startswith("promoted"),
        "seconds": time.time() - started,
        "machine": machine(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scenario.json", result)
    _plot(traffic, out / "timeline.png", shift)
    shutil.copy2(checks / "report.html", out / "report.html")
    atomic_write_text(out / "scenario.md", _markdown(result))
    return result


def _markdown(r: dict[str, Any]) -> str:
    acc = r["served_accuracy"]
    steps = {s["step"]: s for s in r["loop"]["steps"]}
    scores = steps.get("evaluate", {}).get("scores", {})
    lines = [
        f"# mltrail scenario: CIFAR-10 traffic {r['shift']}",
        "",
        "Command: `MLTRAIL_DATA_MIRROR=<datasets> python benchmarks/scenario.py "
        f"--shift {r['shift']} "
        f"--train-size {r['train_size']} --epochs {r['epochs']}` (the CNN trained on "
        f"{r['train_size']} CIFAR-10 images); {r['seconds']:.0f} s in all, on "
        f"{r['machine']['cpu']}, {r['machine']['cores']} cores, {r['machine']['date']}.",
        "",
        "| phase | served accuracy | monitor |",
        "| --- | --- | --- |",
    ]
    for phase in r["phases"]:
        lines.append(f"| {phase['phase']} | {acc[phase['phase']]:.3f} | {phase['check']} |")
    lines += [
        "",
        f"- Retrain decided after {r['detected_after_shifted_predictions']} shifted predictions; "
        f"the loop ran after {r['shifted_predictions_before_retrain']} (a share of "
        f"{r['label_share']} labelled through /feedback), once there were enough labels to "
        "learn from.",
        f"- Loop outcome: **{r['loop']['outcome']}** ({r['loop_seconds']:.0f} s: feedback "
        "batch, dvc repro, evaluation, promotion, reload).",
    ]
    if scores:
        lines.append(
            f"- Evaluation: serving model {scores['serving']['test']:.3f} on the test split, "
            f"{scores['serving']['feedback']:.3f} on held-out shifted feedback; candidate "
            f"{scores['candidate']['test']:.3f} / {scores['candidate']['feedback']:.3f}."
        )
    lines += [
        f"- Accuracy on shifted traffic: {acc['shifted']:.3f} before, "
        f"{acc['after retrain']:.3f} after ({'recovered' if r['recovered'] else 'NOT recovered'}).",
        "",
        "![timeline](timeline.png)",
        "",
        "The monitor's last report: [report.html](report.html). Every step of the loop: "
        "`monitoring/cifar10/loop.jsonl` in the scenario's project copy.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shift", choices=sorted(SHIFTS), default="darken")
    parser.add_argument("--out", type=Path, default=REPO / "reports/scenario")
    parser.add_argument("--work", type=Path, default=REPO / ".mltrail/scenario")
    parser.add_argument("--train-size", type=int, default=20_000, help="CIFAR-10 training images")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_scenario(
        REPO, args.out, args.work, args.shift, train_size=args.train_size, epochs=args.epochs
    )
    acc = result["served_accuracy"]
    print(
        f"in-distribution {acc['in-distribution']:.3f}, shifted {acc['shifted']:.3f}, "
        f"after retrain {acc['after retrain']:.3f}; loop: {result['loop']['outcome']}"
    )
    print(f"report: {args.out / 'scenario.md'}")
    return 0 if result["promoted"] and result["recovered"] else 1


if __name__ == "__main__":
    sys.exit(main())
