"""``mltrail retrain``: from a retrain decision to a new model serving, or to a recorded no.

One pass (cron, CI, or ``--every`` for a loop):

1. **check** the serving model (the pointer's) against its reference (``mltrail monitor``);
   nothing more unless the decision is ``retrain`` (or ``--force``);
2. **feedback**: the captured inputs that came back labelled since the last batch are
   written as a batch (``train-`` / ``eval-``, split by prediction id) into the task's
   feedback folder and ``dvc add``-ed: the data is versioned before anything trains on it;
3. **repro**: ``dvc repro <stage>``, which re-runs prepare (the feedback folder is its
   dependency) and the serving model's training stage, and only those;
4. **evaluate** the candidate and the serving model on the held-out test split and on the
   batch's held-out feedback (recent traffic);
5. **promote** only when the candidate is better on recent traffic (by more than
   ``min_improvement``) and loses at most ``max_test_drop`` on the test split: release copy,
   MLflow alias, pointer file; then **reload** the server if one is named.

Each pass appends one record with every step to ``<out>/<task>/loop.jsonl``. A failure at any
step is recorded and raised; the pointer is written last, so until then the serving model
is untouched.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mltrail.config import Params
from mltrail.contracts.pointer import history_of
from mltrail.contracts.tasks import task_spec
from mltrail.data import feedback
from mltrail.errors import MltrailError
from mltrail.fsio import read_json_lines, sha256_file
from mltrail.monitor.run import monitored_model, run_check
from mltrail.release.promote import promote, reload_server, serving_source
from mltrail.telemetry import Labelled, read_labelled

log = logging.getLogger(__name__)
LOOP = "loop.jsonl"
MIN_RECENT = 30  # held-out rows since the shift needed to judge the models on them alone


@dataclass
class Pass:
    task: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    steps: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "running"

    def step(self, name: str, status: str, **detail: Any) -> None:
        self.steps.append({"step": name, "status": status, "time": time.time(), **detail})
        log.info("retrain %s: %s %s", name, status, detail.get("message", ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "started": self.started,
            "ended": time.time(),
            "outcome": self.outcome,
            "steps": self.steps,
        }


def stage_paths(stage: str, pipeline: Path = Path("dvc.yaml")) -> tuple[Path, Path]:
    """(the prepared data folder it trains on, the model folder it writes) of a training
    stage, read from ``dvc.yaml``."""
    try:
        spec = yaml.safe_load(pipeline.read_text())["stages"][stage]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise MltrailError(f"no stage {stage!r} in {pipeline} ({exc})") from None
    data = next((Path(d) for d in spec.get("deps", []) if str(d).startswith("data/")), None)
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", [])]
    if data is None or not outs:
        raise MltrailError(f"stage {stage} has no data/ dependency or no outputs in {pipeline}")
    return data, Path(outs[0]).parent


def _last_feedback_time(log_path: Path) -> float:
    """The newest prediction time already turned into a batch (0: none yet)."""
    newest = 0.0
    for record in read_json_lines(log_path):
        for step in record.get("steps", []):
            if step.get("step") == "feedback" and step.get("status") == "done":
                newest = max(newest, float(step["newest_prediction_time"]))
    return newest


def _shift_started(out_dir: Path, version: str) -> float:
    """When the monitor first flagged the serving model in the current run of non-ok checks
    (0: never): inputs served since then are the traffic as it is now. When the only flagged
    check is this pass's own, the start of its window is the best estimate there is."""
    from mltrail.monitor.report import read_decisions

    records = [
        r
        for r in sorted(read_decisions(out_dir), key=lambda r: r["time"])
        if r.get("model_version") == version
    ]
    first: dict[str, Any] | None = None
    for record in records:
        if record["decision"] == "ok":
            first = None
        elif first is None:
            first = record
    if first is None:
        return 0.0
    if first is records[-1]:
        return float(first.get("window", {}).get("from", 0.0))
    return float(first["time"])


def _run(command: list[str], log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # The stages call `mltrail`: the one installed beside this interpreter, also from cron.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with log_file.open("ab") as out:
        done = subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            env=os.environ | {"PATH": path},
        )
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace")[-1500:]
        raise MltrailError(f"`{' '.join(command)}` failed (exit {done.returncode}):\n{tail}")


def _load_split(task: str, path: Path, recent_only: bool = False) -> tuple[Any, np.ndarray]:
    """A test split or a feedback batch (``recent_only``: its rows served since the shift)."""
    if task_spec(task).prepared.format == "parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        if recent_only and "recent" in frame:
            frame = frame[frame["recent"]]
        return frame["text"].tolist(), frame["label"].to_numpy()
    with np.load(path, allow_pickle=False) as z:
        keep = z["recent"] if recent_only and "recent" in z else slice(None)
        x, y = z["x"][keep], z["y"][keep]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x, y.astype(np.int64)


def within_classes(rows: list[Labelled], classes: int) -> tuple[list[Labelled], int]:
    """The rows whose label is a class index of the model (0 .. classes - 1), and how many were
    not. The server checks labels as they arrive; labels stored before it did (or written to
    the store by something else) must not become training data."""
    kept = [r for r in rows if 0 <= r.label < classes]
    if len(kept) < len(rows):
        log.warning(
            "%d feedback labels out of the model's %d classes left out",
            len(rows) - len(kept),
            classes,
        )
    return kept, len(rows) - len(kept)


def accuracy(source: str, task: str, inputs: Any, labels: np.ndarray) -> float | None:
    from mltrail.models.loading import load

    if len(labels) == 0:
        return None
    model = load(source, task_spec(task).kind)
    hits = 0
    for start in range(0, len(labels), 500):
        probs = model.predict_proba(inputs[start : start + 500])
        hits += int((probs.argmax(axis=1) == labels[start : start + 500]).sum())
    return hits / len(labels)


def decide(serving: dict[str, Any], candidate: dict[str, Any], params: Params) -> tuple[bool, str]:
    """Promote only a candidate that is better on recent traffic and not worse elsewhere."""
    p = params.retrain
    if candidate["feedback"] is None or serving["feedback"] is None:
        return False, "no held-out feedback to compare the models on"
    gain = candidate["feedback"] - serving["feedback"]
    drop = serving["test"] - candidate["test"]
    if gain <= p.min_improvement:
        return False, (
            f"candidate is not better on recent feedback ({candidate['feedback']:.4f} "
            f"vs {serving['feedback']:.4f}; needs > +{p.min_improvement})"
        )
    if drop > p.max_test_drop:
        return False, (
            f"candidate loses {drop:.4f} accuracy on the held-out test split "
            f"(allowed {p.max_test_drop})"
        )
    return True, (
        f"candidate better on recent feedback by {gain:+.4f} and within "
        f"{p.max_test_drop} on the test split ({-drop:+.4f})"
    )


def retrain_once(
    params: Params,
    store: str,
    out_dir: Path = Path("monitoring"),
    force: bool = False,
    server: str | None = None,
    api_key: str | None = None,
    dvc: Callable[[list[str], Path], None] | None = None,
) -> dict[str, Any]:
    """One pass of the loop; returns (and appends to ``loop.jsonl``) its record."""
    p = params.retrain
    task = p.task
    spec = task_spec(task)
    record = Pass(task)
    log_path = out_dir / task / LOOP
    run_dvc = dvc or (lambda args, log_file: _run([sys.executable, "-m", "dvc", *args], log_file))
    dvc_log = out_dir / task / f"dvc-{record.id}.log"
    try:
        serving = serving_source(params, task)
        model = monitored_model(serving)
        history = history_of(Path(params.retrain.pointer_file))
        check = run_check(store, model, params.monitor, out_dir / task, history)
        record.step(
            "check",
            "done",
            decision=check.decision,
            check_id=check.id,
            model_version=model.version,
            reasons=[r.message for r in check.reasons],
        )
        if check.decision != "retrain" and not force:
            record.outcome = f"no action ({check.decision})"
            return record.as_dict()

        after = _last_feedback_time(log_path)
        rows, out_of_range = within_classes(
            read_labelled(store, spec.endpoint, after), len(model.reference.classes)
        )
        if not rows:
            raise MltrailError(
                "no labelled production data to retrain on since the last batch",
                hint="serve with capture_inputs > 0 (MLTRAIL_CAPTURE_INPUTS) and send labels "
                "to POST /feedback",
            )
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{record.id[:6]}"
        folder = Path(params.dataset(task).feedback_dir or f"data/feedback/{task}")
        shift = _shift_started(out_dir / task, model.version)
        batch = feedback.write_batch(
            folder,
            task,
            stamp,
            [r.prediction_id for r in rows],
            [r.input for r in rows],
            [r.label for r in rows],
            p.eval_fraction,
            [r.time >= shift for r in rows],
        )
        run_dvc(["add", "--quiet", str(batch.train), str(batch.eval)], dvc_log)
        record.step(
            "feedback",
            "done",
            rows=batch.rows,
            files={str(f): sha256_file(f) for f in (batch.train, batch.eval)},
            newest_prediction_time=rows[-1].time,
            shift_started=shift,
            out_of_range_labels=out_of_range,
        )

        data_dir, model_dir = stage_paths(p.stage)
        started = time.time()
        run_dvc(["repro", p.stage], dvc_log)
        candidate = str(model_dir)
        candidate_model = monitored_model(candidate)
        record.step(
            "repro",
            "done",
            stage=p.stage,
            seconds=time.time() - started,
            candidate=candidate_model.version,
            log=str(dvc_log),
            data_sha256=candidate_model.manifest.data.content_sha256,
        )
        if candidate_model.version == model.version:
            record.outcome = "not promoted: the candidate is the serving model"
            record.step("promote", "skipped", message=record.outcome)
            return record.as_dict()

        test_inputs, test_labels = _load_split(task, data_dir / spec.prepared.test)
        # Recent traffic: the held-out rows served since the shift, when there are enough.
        recent = batch.rows["eval_recent"] >= MIN_RECENT
        fb_inputs, fb_labels = _load_split(task, batch.eval, recent_only=recent)
        scores = {
            name: {
                "test": accuracy(src, task, test_inputs, test_labels),
                "feedback": accuracy(src, task, fb_inputs, fb_labels),
            }
            for name, src in (("serving", serving), ("candidate", candidate))
        }
        better, why = decide(scores["serving"], scores["candidate"], params)
        record.step(
            "evaluate",
            "done",
            scores=scores,
            promote=better,
            message=why,
            test_rows=len(test_labels),
            feedback_rows=len(fb_labels),
            feedback_rows_recent_only=recent,
        )
        if not better:
            record.outcome = f"not promoted: {why}"
            record.step("promote", "skipped", message=why)
            return record.as_dict()

        promoted = promote(
            model_dir, params, {"check": check.id, "loop": record.id, "scores": scores, "why": why}
        )
        record.step(
            "promote",
            "done",
            version=promoted["version"],
            release=promoted["release"],
            registry=promoted["registry"],
            previous=promoted["previous"],
        )
        if server:
            now = reload_server(server, task, str(Path(promoted["release"]).resolve()), api_key)
            record.step("reload", "done", server=server, serving=now)
        record.outcome = f"promoted {promoted['version']}"
        return record.as_dict()
    except MltrailError as exc:
        record.outcome = f"failed: {exc}"
        record.step("error", "failed", message=str(exc))
        raise
    finally:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as f:
            f.write(json.dumps(record.as_dict(), sort_keys=True, default=str) + "\n")
