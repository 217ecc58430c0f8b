"""The temporal audit: one timing record for training and serving, and a new model version
slower than the one it replaced flagged only beyond noise; latencies written through the real
stores (SQLite and PostgreSQL) with known distributions."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from mltrail.config import LatencySlo, MonitorParams
from mltrail.contracts.manifest import Manifest
from mltrail.monitor.audit import (
    audit_latency,
    read_history,
    replaced_version,
    serving_records,
    training_records,
)
from mltrail.monitor.policy import check_window
from mltrail.telemetry import Prediction, TelemetryStore
from tests.monitor import synthetic

PARAMS = MonitorParams(latency=LatencySlo(regression_ratio=1.2, regression_min_samples=50))
ENDPOINT = "/predict/text"


def _served(store: TelemetryStore, version: str, start: float, median_ms: float, n: int) -> None:
    """``n`` predictions of ``version`` from ``start``, latencies lognormal (sigma 0.4: a
    realistic spread) around ``median_ms``."""
    rng = np.random.default_rng(zlib.crc32(f"{version} {median_ms}".encode()))
    ms = median_ms * rng.lognormal(0.0, 0.4, n)
    store.write(
        [
            Prediction(f"{version}-{i}", start + i, ENDPOINT, version, 0, "neg", 0.9, float(v))
            for i, v in enumerate(ms)
        ]
    )


@pytest.mark.parametrize(
    ("new_median", "n", "slower", "tested"),
    [
        (6.0, 400, True, True),  # 1.5x: flagged
        (4.0, 400, False, True),  # the same distribution: not flagged
        (4.2, 20000, False, True),  # 1.05x: real (p tiny) but under the practical threshold
        (8.0, 30, False, False),  # 2x, but too few predictions to test: said so
    ],
)
def test_a_slower_new_version_is_flagged_beyond_noise_only(
    store: TelemetryStore, new_median: float, n: int, slower: bool, tested: bool
) -> None:
    _served(store, "m@old", 1000.0, 4.0, n if n > 1000 else 400)
    _served(store, "m@new", 100_000.0, new_median, n)
    found = audit_latency(store, ENDPOINT, "m@new", PARAMS)
    assert found is not None
    assert (found.previous, found.tested, found.slower) == ("m@old", tested, slower)
    if tested:
        assert found.ratio == pytest.approx(new_median / 4.0, rel=0.1)
        assert found.p_value is not None
        assert (found.p_value < PARAMS.alpha) == (new_median > 4.0)
    else:
        assert "not tested" in found.message and "50 of each needed" in found.message
    # The first version replaced nothing.
    assert audit_latency(store, ENDPOINT, "m@old", PARAMS) is None


def test_the_monitor_warns_of_a_slower_version_and_records_the_test(
    store: TelemetryStore,
) -> None:
    _served(store, "m@old", 1000.0, 4.0, 300)
    _served(store, "m@new", 100_000.0, 7.0, 300)
    regression = audit_latency(store, ENDPOINT, "m@new", PARAMS)
    check = check_window(synthetic.window(), synthetic.reference(), PARAMS, regression=regression)
    assert check.decision == "warn"
    [reason] = [r for r in check.reasons if r.check == "latency"]
    assert reason.level == "warn" and "slower than m@old" in reason.message
    assert check.as_dict()["latency"]["regression"]["slower"] is True


def test_the_version_replaced_comes_from_the_promotions_else_the_telemetry_order(
    tmp_path: Path, store: TelemetryStore
) -> None:
    history = tmp_path / "history.jsonl"
    lines = [
        {"time": 1.0, "task": "text", "version": "m@1"},
        {"time": 2.0, "task": "image", "version": "c@1"},
        {"time": 3.0, "task": "text", "version": "m@2"},
        {"time": 4.0, "task": "text", "version": "m@1"},  # a rollback to m@1
    ]
    history.write_text("".join(json.dumps(r) + "\n" for r in lines) + "{cut short\n")
    promotions = read_history(history, "text")
    assert [r["version"] for r in promotions] == ["m@1", "m@2", "m@1"]
    assert replaced_version("m@1", promotions, []) == "m@2"  # the rollback replaced m@2
    assert replaced_version("m@2", promotions, []) == "m@1"
    _served(store, "t@a", 1000.0, 4.0, 3)
    _served(store, "t@b", 2000.0, 4.0, 3)
    served = store.read_version_latency(ENDPOINT)
    assert replaced_version("t@b", [], served) == "t@a"
    assert replaced_version("t@a", [], served) is None
    assert read_history(tmp_path / "none.jsonl") == []


def test_training_and_serving_times_share_one_record(store: TelemetryStore, tmp_path: Path) -> None:
    manifest = Manifest.from_json(json.loads(_MANIFEST))
    train = {r.what: r for r in training_records(manifest)}
    assert set(train) == {"train_s", "predict_s", "stage_s"}
    assert train["train_s"].median == 1.5 and train["train_s"].unit == "s"
    assert train["train_s"].source == "train" and train["train_s"].n == 1
    assert train["train_s"].model_version == manifest.model_version
    _served(store, "m@a", 1000.0, 4.0, 200)
    [serve] = serving_records(store.read_version_latency(ENDPOINT))
    assert (serve.source, serve.what, serve.unit, serve.n) == ("serve", "inference_ms", "ms", 200)
    assert serve.median is not None and 3.5 < serve.median < 4.5
    assert set(serve.as_dict()) == set(train["train_s"].as_dict())


_MANIFEST = json.dumps(
    {
        "task": "text",
        "stage": "train_text_baseline",
        "created_at": "2026-12-01T10:00:00Z",
        "git": {"commit": "abc", "dirty": False},
        "params": {},
        "params_sha256": "0" * 64,
        "data": {"path": "d", "content_sha256": None, "source_sha256": None, "files": {}},
        "model": {"file": "model.skops", "sha256": "1" * 64},
        "tracking": {},
        "metrics": {"accuracy": 0.9},
        "timings": {"train_s": 1.5, "predict_s": 0.1, "stage_s": 2.5},
        "libraries": {},
        "host": {"machine": "x86_64", "system": "Linux"},
    }
)


def test_check_json_and_the_report_carry_the_regression(
    store: TelemetryStore, tmp_path: Path
) -> None:
    from mltrail.monitor.report import write_outputs

    _served(store, "m@old", 1000.0, 4.0, 300)
    _served(store, "m@new", 100_000.0, 7.0, 300)
    regression = audit_latency(store, ENDPOINT, "m@new", PARAMS)
    window, reference = synthetic.window(), synthetic.reference()
    check = check_window(window, reference, PARAMS, "m@new", regression=regression)
    paths = write_outputs(tmp_path, check, "text", reference, window)
    saved = json.loads(paths["json"].read_text())["latency"]["regression"]
    assert saved["slower"] is True and saved["previous"] == "m@old"
    assert saved["ratio"] == pytest.approx(7.0 / 4.0, rel=0.1)
    assert "Latency against the version replaced" in paths["html"].read_text()
    assert "slower than m@old" in paths["html"].read_text()
