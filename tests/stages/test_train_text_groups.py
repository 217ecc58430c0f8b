"""Group metrics in training, on real IMDB reviews with a group column: MetricFrame's
per-group scores in metrics.json, fairness.json and the tracker run; a gap put into one group
is found, and a random split into groups shows none."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import mltrail.stages.prepare_text as prepare_text
from mltrail.config import Params
from mltrail.models.metrics import GROUP_GAP
from mltrail.stages import train_text
from mltrail.tracking.journal import read_state
from tests.imdb import imdb_rows, write_grouped_csv

pytestmark = pytest.mark.shared_data
Make = Callable[..., Params]
ROWS = 3000  # 2,400 train, 600 test: about 1 s to train


@pytest.fixture
def grouped_data(tmp_path: Path, make_params: Make) -> Path:
    csv = write_grouped_csv(tmp_path / "g.csv", imdb_rows(ROWS, seed=7))
    out = tmp_path / "prepared"
    params = make_params(f"text.source.path={csv}", "text.group_column=grp")
    prepare_text.run(params, out, tmp_path, progress=False)
    return out


def _accuracy(frame: pd.DataFrame, predicted: np.ndarray, group: str) -> float:
    mask = (frame["group"] == group).to_numpy()
    return float(np.mean(predicted[mask] == frame["label"].to_numpy()[mask]))


def test_random_groups_show_a_small_gap_and_the_tracker_run_carries_it(
    workdir: Path, grouped_data: Path, make_params: Make
) -> None:
    params = make_params(
        f"tracking.mlflow_uri=sqlite:///{workdir / 'mlflow.db'}",
        f"tracking.journal_dir={workdir / 'journal'}",
        "tracking.wait=true",
        "tracking.retry_for_s=0",
    )
    out = workdir / "model"
    manifest = train_text.run(params, "mlflow", grouped_data, out)
    metrics = json.loads((out / "metrics.json").read_text())
    test = pd.read_parquet(grouped_data / "test.parquet")
    predicted = pd.read_csv(out / "predictions.csv")["predicted"].map({"neg": 0, "pos": 1})
    for group in ("a", "b"):  # both present, each scored on its own rows
        assert metrics[f"group.{group}.accuracy"] == pytest.approx(
            _accuracy(test, predicted.to_numpy(), group)
        )
        assert metrics[f"group.{group}.support"] == (test["group"] == group).sum()
        assert 0.0 < metrics[f"group.{group}.selection_rate"] < 1.0
        assert 0.75 < metrics[f"group.{group}.f1_macro"] <= 1.0
    gap = abs(metrics["group.a.accuracy"] - metrics["group.b.accuracy"])
    assert metrics[GROUP_GAP] == pytest.approx(gap)
    # Groups drawn at random: 300 test rows each measure accuracy to about +-2 points.
    assert gap < 0.08
    fairness = json.loads((out / "fairness.json").read_text())
    assert set(fairness["groups"]) == {"a", "b"} and fairness["selection_rate_of"] == "pos"
    assert fairness["overall"]["accuracy"] == pytest.approx(metrics["accuracy"])
    # The same values in the MLflow run, through the one tracking layer.
    state = read_state(Path(str(manifest.tracking.journal)), "mlflow")
    assert state is not None
    run = mlflow.tracking.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(
        state["run_id"]
    )
    for key in (GROUP_GAP, "group.a.accuracy", "group.b.f1_macro", "group.b.support"):
        assert run.data.metrics[key] == pytest.approx(metrics[key])


def test_a_gap_put_into_one_group_is_measured_in_its_direction(
    grouped_data: Path, make_params: Make
) -> None:
    """40% of group b's test labels flipped: b's accuracy falls to about
    0.6 * acc + 0.4 * (1 - acc), a's does not move; the gap is that difference."""
    train = pd.read_parquet(grouped_data / "train.parquet")
    test = pd.read_parquet(grouped_data / "test.parquet")
    rng = np.random.default_rng(3)
    in_b = np.flatnonzero((test["group"] == "b").to_numpy())
    flipped = rng.choice(in_b, size=int(0.4 * len(in_b)), replace=False)
    test.loc[flipped, "label"] = 1 - test.loc[flipped, "label"]
    trained = train_text.train_text(train, test, ["neg", "pos"], make_params().train_text)
    fairness = trained.fairness
    assert fairness is not None
    acc_a = _accuracy(test, trained.predicted, "a")
    acc_b = _accuracy(test, trained.predicted, "b")
    assert trained.metrics["group.a.accuracy"] == pytest.approx(acc_a)
    assert trained.metrics["group.b.accuracy"] == pytest.approx(acc_b)
    assert fairness["best"] == "a" and fairness["worst"] == "b"
    assert trained.metrics[GROUP_GAP] == pytest.approx(acc_a - acc_b)
    assert trained.metrics[GROUP_GAP] > 0.2  # about 0.8 * (2 * acc - 1) / 2 for acc ~ 0.85


def test_without_groups_there_are_no_group_metrics(grouped_data: Path, make_params: Make) -> None:
    train = pd.read_parquet(grouped_data / "train.parquet").drop(columns="group")
    test = pd.read_parquet(grouped_data / "test.parquet").drop(columns="group")
    trained = train_text.train_text(train, test, ["neg", "pos"], make_params().train_text)
    assert trained.fairness is None
    assert not [k for k in trained.metrics if k.startswith("group")]
