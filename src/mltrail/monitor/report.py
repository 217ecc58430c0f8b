"""What a check leaves behind: ``report.html`` (plots inline, one file to open or mail),
``check.json`` (everything measured), ``monitor.prom`` (Prometheus gauges for
node_exporter's textfile collector, :mod:`mltrail.monitor.prom`) and one line in
``decisions.jsonl`` (the decision record the retrain loop and the lineage read).
Files are replaced atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from mltrail.fsio import atomic_write_text, read_json_lines, write_json
from mltrail.models.reference import Reference
from mltrail.monitor.policy import Check
from mltrail.monitor.prom import write_prom
from mltrail.telemetry import Window

DECISIONS = "decisions.jsonl"
COLORS = {"ok": "#2e7d32", "warn": "#ef6c00", "retrain": "#c62828"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _distributions(check: Check, reference: Reference, window: Window) -> str:
    import matplotlib.pyplot as plt

    from mltrail.monitor.policy import window_arrays

    features, predicted, confidence = window_arrays(window, reference.classes)
    panels = [(n, reference.features[n], features[n]) for n in reference.features if n in features]
    panels.append(("confidence", reference.confidence, confidence))
    tests = {t.name: t for t in check.tests}
    cols = 4
    rows = (len(panels) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, (name, ref, win) in zip(axes.flat, panels, strict=False):
        both = np.concatenate([ref, win])
        lo, hi = np.percentile(both, [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        test = tests.get(name)
        color = COLORS["retrain"] if test is not None and test.drifted else "#1565c0"
        # The reference filled in grey, the window as an outline over it in the test's colour.
        styles = [
            (ref, {"color": "#9e9e9e", "alpha": 0.6, "label": "reference"}),
            (win, {"histtype": "step", "lw": 1.8, "color": color, "label": "window"}),
        ]
        for values, style in styles:
            ax.hist(np.clip(values, lo, hi), bins=bins, density=True, **style)
        title = name if test is None else f"{name}  p={test.p_value:.1e}"
        ax.set_title(title, fontsize=8, color=color)
        ax.tick_params(labelsize=6)
    ax = axes.flat[len(panels)]
    x = np.arange(len(reference.classes))
    window_mix = np.bincount(predicted, minlength=len(x))[: len(x)] / max(len(predicted), 1)
    ax.bar(x - 0.2, reference.class_fractions, 0.4, color="#9e9e9e", label="reference")
    test = tests.get("class_mix")
    ax.bar(
        x + 0.2,
        window_mix,
        0.4,
        color=COLORS["retrain"] if test is not None and test.drifted else "#1565c0",
        label="window",
    )
    ax.set_xticks(x, reference.classes, fontsize=6, rotation=45)
    ax.set_title("predicted class mix" + (f"  p={test.p_value:.1e}" if test else ""), fontsize=8)
    ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) + 1 :]:
        ax.set_axis_off()
    fig.tight_layout()
    return _png(fig)


def _timeline(
    history: Window, checks: list[dict[str, Any]], slo_p95: float, classes: int
) -> str | None:
    """Accuracy from feedback, confidence and latency over the recent history, with model
    versions shaded and past decisions marked: where a shift and a recovery show."""
    import matplotlib.pyplot as plt

    predictions = history.predictions
    if len(predictions) < 2:
        return None
    step = max(len(predictions) // 60, 10)
    buckets = [predictions[i : i + step] for i in range(0, len(predictions), step)]
    x = np.arange(len(buckets)) * step
    conf = [float(np.mean([p.confidence for p in b])) for b in buckets]
    p95 = [float(np.percentile([p.inference_ms for p in b], 95)) for b in buckets]
    acc: list[float] = []
    for b in buckets:
        labelled = [  # an out-of-range label is skipped, not a miss (see scored_feedback)
            p for p in b if 0 <= history.feedback.get(p.prediction_id, -1) < classes
        ]
        hits = [int(p.label) == history.feedback[p.prediction_id] for p in labelled]
        acc.append(float(np.mean(hits)) if hits else np.nan)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.6), sharex=True)
    top.plot(x, acc, "o-", ms=3, color="#2e7d32", label="accuracy (feedback)")
    top.plot(x, conf, "-", color="#1565c0", label="mean confidence")
    top.set_ylim(0, 1.02)
    top.set_ylabel("share")
    top.legend(fontsize=7, loc="lower left")
    bottom.plot(x, p95, "-", color="#6a1b9a", label="p95 model time (ms)")
    bottom.axhline(slo_p95, color="#c62828", ls="--", lw=1, label="p95 SLO")
    bottom.set_ylabel("ms")
    bottom.set_xlabel("prediction number (oldest shown = 0)")
    bottom.legend(fontsize=7, loc="upper left")
    versions = [p.model_version for p in predictions]
    start = 0
    for i in range(1, len(versions) + 1):
        if i == len(versions) or versions[i] != versions[start]:
            for ax in (top, bottom):
                ax.axvspan(start, i, color="#000000", alpha=0.04 if (start // 1) % 2 else 0.0)
            top.text(start, 1.0, versions[start].split("@")[-1][:8], fontsize=6, va="top")
            if start:
                for ax in (top, bottom):
                    ax.axvline(start, color="black", lw=1)
            start = i
    times = [p.time for p in predictions]
    for record in checks:
        if record.get("decision") in ("warn", "retrain") and times[0] <= record["time"]:
            position = int(np.searchsorted(times, record["time"]))
            top.axvline(position, color=COLORS[record["decision"]], lw=0.8, ls=":")
    fig.tight_layout()
    return _png(fig)


def _fairness(fairness: dict[str, Any]) -> str:
    """Live accuracy per group: the table, and why the decision was taken."""
    if not fairness:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(g['group'])}</td><td>{g['labelled']}</td><td>{g['correct']}</td>"
        f"<td>{g['accuracy']:.3f}</td><td>{'yes' if g['tested'] else 'too few labels'}</td></tr>"
        for g in fairness["groups"]
    )
    p_value = fairness.get("p_value")
    test = (
        ""
        if p_value is None
        else f" {e(fairness['test'])}: p={p_value:.3g} at alpha {fairness['alpha']:.3g} "
        f"({fairness['pairs']} pair{'s' if fairness['pairs'] != 1 else ''} of groups)."
    )
    return (
        f"<h2>Live accuracy per group <span style='color:{COLORS[fairness['level']]}'>"
        f"{e(fairness['level'])}</span></h2><p>{e(fairness['why'])}.{test} Allowed gap "
        f"{fairness['max_gap']}; groups need {fairness['min_labelled']} labelled predictions "
        f"to be tested; {fairness['without_group']} labelled predictions named no group.</p>"
        "<table><tr><th>group</th><th>labelled</th><th>correct</th><th>accuracy</th>"
        f"<th>tested</th></tr>{rows}</table>"
    )


def render_html(
    check: Check,
    task: str,
    reference: Reference,
    window: Window,
    history: Window | None = None,
    past: list[dict[str, Any]] | None = None,
) -> str:
    e = html.escape
    color = COLORS[check.decision]
    reasons = (
        "".join(
            f"<li><b style='color:{COLORS[r.level]}'>{e(r.level)}</b> [{e(r.check)}] "
            f"{e(r.message)}</li>"
            for r in check.reasons
        )
        or "<li>no findings</li>"
    )
    rows = "".join(
        f"<tr style='color:{COLORS['retrain'] if t.drifted else 'inherit'}'><td>{e(t.name)}</td>"
        f"<td>{t.group}</td><td>{t.method}</td><td>{t.statistic:.4g}</td>"
        f"<td>{t.p_value:.3g}</td><td>{t.threshold:.2g}</td>"
        f"<td>{'' if t.reference_mean is None else f'{t.reference_mean:.4g}'}</td>"
        f"<td>{'' if t.window_mean is None else f'{t.window_mean:.4g}'}</td>"
        f"<td>{'yes' if t.drifted else ''}</td></tr>"
        for t in check.tests
    )
    acc = check.accuracy
    live = "n/a" if acc.get("live") is None else f"{acc['live']:.3f}"
    lat = check.latency
    sections = []
    regression = lat.get("regression")
    if regression:  # the temporal audit (mltrail.monitor.audit)
        flag = COLORS["warn"] if regression.get("slower") else "inherit"
        sections.append(
            f"<h2>Latency against the version replaced</h2><p style='color:{flag}'>"
            f"{e(str(regression.get('message', '')))}</p>"
        )
    if check.tests:
        sections.append(
            "<h2>Distributions: reference (grey) vs window</h2>"
            f"<img src='data:image/png;base64,{_distributions(check, reference, window)}'>"
        )
    if history is not None:
        timeline = _timeline(
            history, past or [], check.latency.get("slo_p95_ms", 0.0), len(reference.classes)
        )
        if timeline:
            sections.append(
                "<h2>Over time (model versions separated by lines; dotted: warn / retrain)</h2>"
                f"<img src='data:image/png;base64,{timeline}'>"
            )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mltrail monitor: {e(task)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 8px}}
.badge{{display:inline-block;padding:4px 14px;border-radius:4px;color:#fff;
background:{color};font-weight:bold;font-size:20px}}img{{max-width:100%}}</style></head>
<body><h1>mltrail monitor: {e(task)} <span class="badge">{e(check.decision.upper())}</span></h1>
<p>Model <code>{e(check.model_version or "?")}</code>; window of {check.predictions}
predictions; check <code>{check.id}</code>.</p>
<ul>{reasons}</ul>
<p>Live accuracy {live} on {acc.get("labelled", 0)} labelled predictions (reference
{acc.get("reference", float("nan")):.3f}). Model time p50 / p95 / p99:
{lat.get("p50_ms", float("nan")):.2f} / {lat.get("p95_ms", float("nan")):.2f} /
{lat.get("p99_ms", float("nan")):.2f} ms (SLO p95 {lat.get("slo_p95_ms", float("nan")):.0f}
ms).</p>
{_fairness(check.fairness)}
{"".join(sections)}
<h2>Drift tests</h2>
<table><tr><th>test</th><th>group</th><th>method</th><th>statistic</th><th>p-value</th>
<th>threshold</th><th>reference mean</th><th>window mean</th><th>drift</th></tr>{rows}</table>
</body></html>
"""


def read_decisions(out_dir: Path) -> list[dict[str, Any]]:
    return read_json_lines(out_dir / DECISIONS)


def write_outputs(
    out_dir: Path,
    check: Check,
    task: str,
    reference: Reference,
    window: Window,
    history: Window | None = None,
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    past = read_decisions(out_dir)
    record = check.as_dict() | {"task": task}
    paths = {
        "html": out_dir / "report.html",
        "json": out_dir / "check.json",
        "prom": out_dir / "monitor.prom",
        "decisions": out_dir / DECISIONS,
    }
    write_json(paths["json"], record)
    write_prom(check, task, paths["prom"])
    atomic_write_text(
        paths["html"], render_html(check, task, reference, window, history, [*past, record])
    )
    # One line, one write: a reader never sees half a record.
    with paths["decisions"].open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    return paths
