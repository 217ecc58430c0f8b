"""The served CNN under torch against ONNX Runtime: latency, throughput, start-up, size.

Both run what ``mltrail serve`` runs for ``POST /predict/image``: the model folder loaded by
``mltrail.models.loading.load`` (``$MLTRAIL_CNN_RUNTIME=torch`` or ``onnx``), whose predictor
returns the probabilities and the monitoring profile (image statistics and the penultimate
features projected on the reference's directions). JSON parsing and HTTP are left out: they
are the same for both (benchmarks/serving.py measures the whole request).

The model is ``--model`` (the pipeline's ``models/cifar10/baseline``). A model trained before
``model.onnx`` existed is copied to the work folder and given its ONNX copy by the exporter
training uses (``mltrail.models.cnn_io.export_onnx``), named in the copy's manifest as
training names it; the weights file and its sha256 are unchanged.

Measured, in one process, alternating the runtimes round by round (``--rounds``):
the latency of one call at batch 1, 32 and 256 (``--requests`` calls per round at batch 1,
fewer for larger batches), as median and p95, and images per second. In fresh processes
(``--starts`` each, alternating): the import time of the runtime, the time to load the model,
the first prediction, the peak memory (VmHWM; getrusage's maxrss would start from the
parent's, inherited at fork), and whether torch was imported at all. Then the outputs of
both on ``--parity-images`` test images, and the installed size of each runtime with the
packages only it brings (from the installed distributions' RECORD files).

    python benchmarks/cnn_runtime.py [--rounds 5] [--requests 300] [--starts 5]

Writes benchmarks/results/cnn_runtime.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, fresh_dir, machine

RESULTS = Path(__file__).resolve().parent / "results"
RUNTIMES = ("torch", "onnx")
BATCHES = (1, 32, 256)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=REPO / "models/cifar10/baseline")
    parser.add_argument("--data", type=Path, default=REPO / "data/prepared/cifar10")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--parity-images", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mltrail-bench-cnn-runtime"))
    args = parser.parse_args()
    work = fresh_dir(args.work)
    model_dir, exported = with_onnx_copy(args.model.resolve(), work)
    images = test_images(args.data.resolve(), max(args.parity_images, 256))
    models = {r: load_as(model_dir, r) for r in RUNTIMES}
    assert {r: m.runtime for r, m in models.items()} == {r: r for r in RUNTIMES}
    parity = compare(models, images[: args.parity_images])
    print(f"parity: {parity}", flush=True)
    latency = measure_latency(models, images, args.rounds, args.requests)
    starts = measure_starts(model_dir, args.starts)
    sizes = installed_sizes()
    result = {
        "benchmark": "cnn_runtime",
        "command": f"python benchmarks/cnn_runtime.py --rounds {args.rounds} "
        f"--requests {args.requests} --starts {args.starts} "
        f"--parity-images {args.parity_images}",
        "machine": machine() | {"onnxruntime": importlib.metadata.version("onnxruntime")},
        "model": {
            "source": str(args.model),
            "onnx_exported_by_benchmark": exported,
            "accuracy": models["torch"].manifest["metrics"].get("accuracy"),
            "architecture": models["torch"].manifest["model"]["info"].get("architecture"),
            "model_pt_bytes": (model_dir / "model.pt").stat().st_size,
            "model_onnx_bytes": (model_dir / "model.onnx").stat().st_size,
        },
        "threads": threads(),
        "parity": parity,
        "latency": latency,
        "starts": starts,
        "sizes": sizes,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cnn_runtime.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "cnn_runtime.md").write_text(report(result))
    print((RESULTS / "cnn_runtime.md").read_text())


def with_onnx_copy(model_dir: Path, work: Path) -> tuple[Path, bool]:
    """``model_dir`` if its manifest names an ONNX copy, else a copy of it given one."""
    from mltrail.fsio import sha256_file

    manifest = json.loads((model_dir / "manifest.json").read_text())
    if manifest["model"].get("info", {}).get("onnx"):
        return model_dir, False
    from mltrail.models.cnn_io import ONNX_OPSET, export_onnx, load_cnn

    copy = work / "model"
    shutil.copytree(model_dir, copy)
    info = manifest["model"]["info"]
    export_onnx(
        load_cnn(copy / manifest["model"]["file"], info["architecture"]), copy / "model.onnx"
    )
    info["onnx"] = {"file": "model.onnx", "sha256": sha256_file(copy / "model.onnx"),
                    "opset": ONNX_OPSET, "outputs": ["features", "logits"]}  # fmt: skip
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return copy, True


def test_images(data: Path, n: int) -> np.ndarray:
    if (data / "test.npz").is_file():
        with np.load(data / "test.npz") as z:
            return np.ascontiguousarray(z["x"][:n], dtype=np.float32)
    return np.random.default_rng(0).random((n, 3, 32, 32), dtype=np.float32)


def load_as(model_dir: Path, runtime: str) -> Any:
    from mltrail.models.loading import CNN_RUNTIME_ENV, load

    os.environ[CNN_RUNTIME_ENV] = runtime
    try:
        return load(str(model_dir), "image")
    finally:
        del os.environ[CNN_RUNTIME_ENV]


def compare(models: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    out = {}
    for r, m in models.items():
        parts = [m.predict(x[i : i + 250]) for i in range(0, len(x), 250)]
        probs = np.concatenate([p for p, _ in parts])
        profiles = [row for _, rows in parts for row in rows]
        names = list(profiles[0])
        out[r] = (probs, np.array([[p[n] for n in names] for p in profiles]), names)
    (p_t, f_t, names_t), (p_o, f_o, names_o) = out["torch"], out["onnx"]
    proj = [i for i, n in enumerate(names_t) if n.startswith("proj_")]
    return {
        "images": len(x),
        "same_profile_names": names_t == names_o,
        "max_abs_prob_diff": float(np.abs(p_t - p_o).max()),
        "argmax_agreement": float(np.mean(p_t.argmax(1) == p_o.argmax(1))),
        "max_abs_projection_diff": float(np.abs(f_t[:, proj] - f_o[:, proj]).max()),
        "projection_scale": float(np.abs(f_t[:, proj]).max()),
        "max_abs_statistic_diff": float(np.abs(np.delete(f_t - f_o, proj, axis=1)).max()),
    }


def measure_latency(
    models: dict[str, Any], images: np.ndarray, rounds: int, requests: int
) -> dict[str, Any]:
    calls: dict[str, dict[int, list[float]]] = {r: {b: [] for b in BATCHES} for r in RUNTIMES}
    for rnd in range(rounds):
        order = RUNTIMES if rnd % 2 == 0 else RUNTIMES[::-1]
        for batch in BATCHES:
            n = max(20, requests * 8 // (8 + batch))  # fewer calls for large batches
            starts = [(i * batch) % (len(images) - batch + 1) for i in range(n)]
            for r in order:
                predict = models[r].predict
                for s in starts[:5]:  # warm-up
                    predict(images[s : s + batch])
                for s in starts:
                    t = time.perf_counter()
                    predict(images[s : s + batch])
                    calls[r][batch].append(time.perf_counter() - t)
        print(f"round {rnd + 1}/{rounds} done", flush=True)
    found: dict[str, Any] = {}
    for r in RUNTIMES:
        found[r] = {}
        for batch, times in calls[r].items():
            ms = np.array(times) * 1000
            found[r][str(batch)] = {
                "calls": len(ms),
                "median_ms": float(np.median(ms)),
                "p95_ms": float(np.percentile(ms, 95)),
                "images_per_s": float(batch * len(ms) / (ms.sum() / 1000)),
            }
    found["onnx_vs_torch"] = {
        str(b): {
            "median_latency": found["onnx"][str(b)]["median_ms"]
            / found["torch"][str(b)]["median_ms"],
            "throughput": found["onnx"][str(b)]["images_per_s"]
            / found["torch"][str(b)]["images_per_s"],
        }
        for b in BATCHES
    }
    return found


START = """
import json, os, sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
from mltrail.models.loading import load
import numpy as np
t2 = time.perf_counter()
m = load(sys.argv[1], "image")
t3 = time.perf_counter()
m.predict(np.zeros((1, 3, 32, 32), np.float32))
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t3 - t2, "first_predict_s": t4 - t3,
    "total_s": t4 - t0, "runtime": m.runtime,
    "peak_rss_mib": [int(line.split()[1]) / 1024 for line in open("/proc/self/status")
                     if line.startswith("VmHWM")][0],
    "torch_imported": "torch" in sys.modules}}))
"""


def measure_starts(model_dir: Path, starts: int) -> dict[str, Any]:
    from mltrail.models.loading import CNN_RUNTIME_ENV

    module = {"torch": "torch", "onnx": "onnxruntime"}
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in RUNTIMES}
    for i in range(starts):
        for r in RUNTIMES if i % 2 == 0 else RUNTIMES[::-1]:
            env = os.environ | {CNN_RUNTIME_ENV: r}
            done = subprocess.run(
                [sys.executable, "-c", START.format(module=module[r]), str(model_dir)],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            runs[r].append(json.loads(done.stdout.strip().splitlines()[-1]))
    found: dict[str, Any] = {}
    for r, rows in runs.items():
        keys = ("import_s", "load_s", "first_predict_s", "total_s", "peak_rss_mib")
        found[r] = {k: statistics.median(row[k] for row in rows) for k in keys}
        found[r]["torch_imported"] = sorted({row["torch_imported"] for row in rows})
        found[r]["runs"] = rows
    return found


def installed_sizes() -> dict[str, Any]:
    """MiB on disk of each runtime and the packages only it brings to the serving set
    (``mltrail[serve]`` without the runtime), from the installed files."""
    serve = requirements_of("mltrail", {"serve"})
    without = {n for n in serve if n not in ("onnxruntime",)}
    base = closure(without)
    found: dict[str, Any] = {}
    for name in ("torch", "onnxruntime"):
        only = sorted(closure(without | {name}) - base)
        sizes = {n: dist_mib(n) for n in only}
        found[name] = {"packages": sizes, "total_mib": sum(sizes.values())}
    return found


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirements_of(name: str, extras: set[str]) -> set[str]:
    from packaging.requirements import Requirement

    wanted = set()
    for line in importlib.metadata.requires(name) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            wanted.add(_norm(req.name))
    return wanted


def closure(names: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo.extend(requirements_of(name, set()) - seen)
    return seen


def dist_mib(name: str) -> float:
    dist = importlib.metadata.distribution(name)
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def threads() -> dict[str, Any]:
    import torch

    return {
        "torch_intra_op": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "onnxruntime": "default session options (intra-op: one thread per physical core)",
    }


def report(result: dict[str, Any]) -> str:
    m, lat, st, par, sz = (result[k] for k in ("machine", "latency", "starts", "parity", "sizes"))
    model = result["model"]
    lines = [
        "# The served CNN: torch against ONNX Runtime",
        "",
        f"`{result['command']}` on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['date']}; torch {m['libraries'].get('torch')}, onnxruntime {m['onnxruntime']}, "
        f"Python {m['python']}. Model: `{model['source']}` ({model['architecture']}, test "
        f"accuracy {model['accuracy']}); model.pt {model['model_pt_bytes'] / 1024:.0f} KiB, "
        f"model.onnx {model['model_onnx_bytes'] / 1024:.0f} KiB"
        + (
            " (exported by the benchmark with training's exporter: the model predates model.onnx)"
            if model["onnx_exported_by_benchmark"]
            else ""
        )
        + ".",
        "",
        "Each call is the served predictor: probabilities and the monitoring profile (image "
        "statistics, projected penultimate features), as `mltrail serve` loads it with "
        "`MLTRAIL_CNN_RUNTIME=torch` or `onnx`; HTTP and JSON are left out. Runtimes alternate "
        "round by round in one process; ratios are ONNX Runtime over torch, measured in the "
        "same run.",
        "",
        "## Latency and throughput",
        "",
        "| batch | torch median ms | torch p95 ms | torch images/s | ONNX Runtime median ms "
        "| ONNX Runtime p95 ms | ONNX Runtime images/s | latency ratio | throughput ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in BATCHES:
        t, o, q = lat["torch"][str(b)], lat["onnx"][str(b)], lat["onnx_vs_torch"][str(b)]
        lines.append(
            f"| {b} | {t['median_ms']:.3f} | {t['p95_ms']:.3f} | {t['images_per_s']:.0f} "
            f"| {o['median_ms']:.3f} | {o['p95_ms']:.3f} | {o['images_per_s']:.0f} "
            f"| {q['median_latency']:.2f} | {q['throughput']:.2f} |"
        )
    lines += [
        "",
        f"Calls per runtime and batch: {lat['torch']['1']['calls']} (batch 1), "
        f"{lat['torch']['32']['calls']} (32), {lat['torch']['256']['calls']} (256). Threads: "
        f"torch {result['threads']['torch_intra_op']}, ONNX Runtime "
        f"{result['threads']['onnxruntime']}.",
        "",
        "## Start-up (fresh process, median of the runs)",
        "",
        "| runtime | import s | load model s | first prediction s | total s | peak RSS MiB "
        "| torch imported |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r, label in (("torch", "torch"), ("onnx", "ONNX Runtime")):
        s = st[r]
        lines.append(
            f"| {label} | {s['import_s']:.2f} | {s['load_s']:.3f} | {s['first_predict_s']:.3f} "
            f"| {s['total_s']:.2f} | {s['peak_rss_mib']:.0f} "
            f"| {'/'.join('yes' if t else 'no' for t in s['torch_imported'])} |"
        )
    lines += [
        "",
        "## Installed size (the runtime and the packages only it brings to `mltrail[serve]`)",
        "",
        "| runtime | MiB | packages |",
        "| --- | ---: | --- |",
    ]
    for name in ("torch", "onnxruntime"):
        pk = sz[name]["packages"]
        listed = ", ".join(f"{n} {v:.0f}" for n, v in sorted(pk.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {name} | {sz[name]['total_mib']:.0f} | {listed} |")
    lines += [
        "",
        "## Same outputs",
        "",
        f"On {par['images']} test images: largest probability difference "
        f"{par['max_abs_prob_diff']:.1e}, predicted classes agree on "
        f"{par['argmax_agreement']:.2%}, profile names identical: {par['same_profile_names']}, "
        f"largest projection difference {par['max_abs_projection_diff']:.1e} (projections up to "
        f"{par['projection_scale']:.1f}), largest image-statistic difference "
        f"{par['max_abs_statistic_diff']:.1e}.",
        "",
        "## Verdict",
        "",
    ]
    ratios = lat["onnx_vs_torch"]
    worst = max(ratios[str(b)]["median_latency"] for b in BATCHES)
    lines.append(
        f"ONNX Runtime's median latency is {worst:.2f} of torch's or less at every batch size "
        f"(throughput {min(ratios[str(b)]['throughput'] for b in BATCHES):.1f}x to "
        f"{max(ratios[str(b)]['throughput'] for b in BATCHES):.1f}x), it starts "
        f"{st['torch']['total_s'] / st['onnx']['total_s']:.1f}x faster in "
        f"{st['onnx']['peak_rss_mib'] / st['torch']['peak_rss_mib']:.2f} of the memory, and "
        f"weighs {sz['onnxruntime']['total_mib']:.0f} MiB against torch's "
        f"{sz['torch']['total_mib']:.0f} MiB, with the same outputs. "
        + ("So the server image runs the CNN under ONNX Runtime, without torch "
           "(`SERVE_EXTRAS=serve`, the Dockerfile's default)." if worst <= 1.2 else
           "It is slower here: the image keeps torch.")
    )  # fmt: skip
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
