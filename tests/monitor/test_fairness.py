"""Live accuracy per group from feedback, on a real model's predictions of real IMDB reviews,
stored in and read back from a real telemetry store: a gap put into one group's feedback is
flagged (warn, p < alpha); groups drawn at random are not; small groups are not tested."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mltrail.config import MonitorParams
from mltrail.monitor.policy import Check, check_window
from mltrail.monitor.report import write_outputs
from mltrail.stages.train_text import TrainedText, train_text
from mltrail.telemetry import Feedback, Prediction, Record, Window
from mltrail.telemetry.stores.sqlite import SQLiteStore
from tests.imdb import imdb_rows

pytestmark = pytest.mark.shared_data
# Drift is not what these tests are about: a window below min_predictions skips it.
PARAMS = MonitorParams(window=5000, min_predictions=10_000, max_accuracy_drop=1.0)


@pytest.fixture(scope="module")
def trained() -> TrainedText:
    """TF-IDF + logistic regression on 2,000 IMDB reviews (about 0.5 s)."""
    from mltrail.config import TrainTextParams

    rows = imdb_rows(2000, seed=0)
    frame = pd.DataFrame({"text": rows["text"], "label": rows["label"].astype(int)})
    return train_text(frame.iloc[:1600], frame.iloc[1600:], ["neg", "pos"], TrainTextParams())


def _traffic(
    trained: TrainedText,
    tmp_path: Path,
    groups: list[str],
    flip: dict[str, float] | None = None,
    seed: int = 0,
) -> tuple[Check, dict[str, float]]:
    """Serve held-out reviews (none of the training's), one group each; feedback is the true
    label, except a ``flip`` share of a group's, which is the other class. Written to and read
    back from a SQLite store; the check, and each group's accuracy counted here."""
    rows = imdb_rows(len(groups), seed=seed, offset=2000)
    probs = trained.model.predict_proba(rows["text"].tolist())
    predicted = probs.argmax(axis=1)
    truth = rows["label"].astype(int).to_numpy()
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    hits: dict[str, list[bool]] = {}
    for i, group in enumerate(groups):
        label = int(truth[i])
        if rng.random() < (flip or {}).get(group, 0.0):
            label = 1 - label
        records.append(
            Prediction(f"p{i}", 1000.0 + i, "/predict/text", "m@1", int(predicted[i]),
                       ["neg", "pos"][predicted[i]], float(probs[i].max()), 1.0, {}, group)
        )  # fmt: skip
        records.append(Feedback(f"p{i}", 5000.0 + i, label))
        hits.setdefault(group, []).append(int(predicted[i]) == label)
    with closing(SQLiteStore(tmp_path / "telemetry.db")) as store:
        store.write(records)
        window = store.read_window()
    check = check_window(window, trained.reference, PARAMS, "m@1")
    return check, {g: float(np.mean(h)) for g, h in hits.items()}


def _random_groups(n: int, seed: int, names: tuple[str, ...] = ("a", "b")) -> list[str]:
    return [str(g) for g in np.random.default_rng(seed).choice(names, size=n)]


def test_a_gap_put_into_one_group_s_feedback_is_a_warning(
    trained: TrainedText, tmp_path: Path
) -> None:
    check, accuracy = _traffic(trained, tmp_path, _random_groups(800, 1), flip={"b": 0.4})
    fairness = check.fairness
    found = {g["group"]: g["accuracy"] for g in fairness["groups"]}
    assert found == pytest.approx(accuracy)  # each group's live accuracy, counted here
    assert fairness["best"] == "a" and fairness["worst"] == "b"
    assert fairness["gap"] == pytest.approx(accuracy["a"] - accuracy["b"])
    assert fairness["gap"] > 0.2 and fairness["p_value"] < PARAMS.alpha
    assert fairness["level"] == "warn" and check.decision == "warn"
    (reason,) = [r for r in check.reasons if r.check == "fairness"]
    assert reason.level == "warn" and "beyond chance" in reason.message
    # The report and check.json say the same.
    paths = write_outputs(tmp_path / "out", check, "text", trained.reference, Window())
    html = paths["html"].read_text()
    assert "Live accuracy per group" in html and "Fisher" in html
    assert '"gap"' in paths["json"].read_text()
    # So do Prometheus's gauges, which MltrailGroupAccuracyGap alerts on.
    prom = {
        (sample.name, sample.labels.get("group", "")): sample.value
        for family in text_string_to_metric_families(paths["prom"].read_text())
        for sample in family.samples
    }
    assert prom[("mltrail_monitor_fairness_decision", "")] == 1
    assert prom[("mltrail_monitor_group_accuracy_gap", "")] == pytest.approx(fairness["gap"])
    for group, value in accuracy.items():
        assert prom[("mltrail_monitor_group_live_accuracy", group)] == pytest.approx(value)


def test_groups_drawn_at_random_are_ok(trained: TrainedText, tmp_path: Path) -> None:
    check, accuracy = _traffic(trained, tmp_path, _random_groups(800, 2))
    fairness = check.fairness
    assert fairness["gap"] == pytest.approx(max(accuracy.values()) - min(accuracy.values()))
    assert fairness["gap"] < PARAMS.fairness_max_gap and fairness["level"] == "ok"
    assert "within the allowed" in fairness["why"]
    assert check.decision == "ok" and not [r for r in check.reasons if r.level != "ok"]


def test_a_gap_on_too_few_labels_is_not_beyond_chance(trained: TrainedText, tmp_path: Path) -> None:
    """About 40 labels a group with the same kind of injected gap: measured, over the limit,
    but the test does not call it (a warning on noise would teach people to ignore it)."""
    check, accuracy = _traffic(trained, tmp_path, _random_groups(80, 3), flip={"b": 0.4}, seed=3)
    fairness = check.fairness
    assert fairness["gap"] == pytest.approx(accuracy["a"] - accuracy["b"])
    assert fairness["gap"] > PARAMS.fairness_max_gap  # 0.157 with these seeds
    assert fairness["p_value"] >= fairness["alpha"] and fairness["level"] == "ok"
    assert "not beyond chance" in fairness["why"]
    assert check.decision == "ok"


def test_small_groups_are_listed_but_not_tested(trained: TrainedText, tmp_path: Path) -> None:
    groups = ["a"] * 200 + ["c"] * 12
    check, accuracy = _traffic(trained, tmp_path, groups, flip={"c": 1.0})
    fairness = check.fairness
    small = {g["group"]: g for g in fairness["groups"]}["c"]
    assert small["labelled"] == 12 and small["tested"] is False
    assert small["accuracy"] == pytest.approx(accuracy["c"])
    assert fairness["gap"] is None and fairness["level"] == "ok"
    assert "1 group with at least 30 labelled predictions: nothing to compare" in fairness["why"]
    notes = [r.message for r in check.reasons if r.check == "fairness"]
    assert any("not tested, fewer than 30 labelled predictions: c (12)" in m for m in notes)
    assert check.decision == "ok"


def test_predictions_without_a_group_leave_no_fairness_section() -> None:
    from tests.monitor.synthetic import reference, window

    plain = check_window(window(labelled=50), reference(), PARAMS)
    assert plain.fairness == {} and "fairness" not in {r.check for r in plain.reasons}
    assert plain.as_dict()["fairness"] == {}
