"""Per-group metrics (MetricFrame) on small arrays whose answers are counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mltrail.models.metrics import GROUP_GAP, flat_group_metrics, group_metric_key, group_scores


def test_group_scores_match_the_counts() -> None:
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0])
    p = np.array([0, 1, 0, 0, 1, 1, 1, 1, 1, 1])
    groups = ["a"] * 4 + ["b"] * 6
    scores = group_scores(y, p, groups, ["neg", "pos"])
    a, b = scores["groups"]["a"], scores["groups"]["b"]
    assert (a["accuracy"], a["support"], a["selection_rate"]) == (0.75, 4, 0.25)  # 3 of 4 right
    assert (b["accuracy"], b["support"]) == (pytest.approx(3 / 6), 6)
    assert b["selection_rate"] == 1.0  # all 6 predicted pos
    assert scores["accuracy_gap"] == pytest.approx(0.25)
    assert (scores["best"], scores["worst"]) == ("a", "b")
    assert scores["overall"]["accuracy"] == pytest.approx(0.6)
    flat = flat_group_metrics(scores)
    assert flat[GROUP_GAP] == pytest.approx(0.25) and flat["group.b.support"] == 6.0


def test_more_than_two_classes_have_no_selection_rate() -> None:
    scores = group_scores(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), list("aabb"), "xyz")
    assert scores["groups"]["b"]["selection_rate"] is None
    assert not [k for k in flat_group_metrics(scores) if k.endswith("selection_rate")]


def test_group_names_become_distinct_tracker_safe_keys() -> None:
    assert group_metric_key("fr-CA", "accuracy") == "group.fr-CA.accuracy"
    one, two = group_metric_key("é", "accuracy"), group_metric_key("è", "accuracy")
    assert one != two and one.startswith("group._-") and one.endswith(".accuracy")
    assert group_metric_key("a/b", "f1_macro").startswith("group.a_b-")
