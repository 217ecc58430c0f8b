"""benchmarks/scenario.py end to end on a small slice of the real CIFAR-10 (the committed
report in reports/scenario/ is the full-size run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mltrail.config import MIRROR_ENV
from tests.conftest import REPO, free_port, shared_datasets

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_the_scenario_detects_retrains_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.scenario import run_scenario

    monkeypatch.setenv(MIRROR_ENV, str(shared_datasets()))
    result = run_scenario(
        REPO, tmp_path / "out", tmp_path / "work", shift="darken", train_size=3000, epochs=2,
        phase_size=200, labelled_shifted=150, port=free_port(),
        # Small batches: the shipped recipe's 256 gives 3,000 images too few steps to learn.
        overrides={"train_cifar10": {"batch_size": 64}},
    )  # fmt: skip
    assert result["phases"][0]["check"] == "ok"
    assert result["detected_after_shifted_predictions"] <= 200
    steps = [s["step"] for s in result["loop"]["steps"]]
    assert steps[:4] == ["check", "feedback", "repro", "evaluate"]
    acc = result["served_accuracy"]
    assert acc["shifted"] < acc["in-distribution"]  # darkening hurts the model
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"scenario.md", "scenario.json", "timeline.png", "report.html"} <= written
    assert json.loads((tmp_path / "out/scenario.json").read_text())["shift"] == "darken"
    if result["promoted"]:
        assert steps[4:] == ["promote", "reload"]
