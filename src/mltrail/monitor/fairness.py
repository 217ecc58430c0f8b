"""Live accuracy per group, from feedback: is the model much worse for one group than another?

A prediction carries a group when the client named one (``group`` in ``/predict/text``,
``group_name`` in telemetry). Over the labelled predictions of a window, each group's
accuracy is counted; groups with fewer than ``fairness_min_labelled`` labels are listed but
not tested (a handful of labels says little). Among the tested groups, the best and the worst
are compared:

- ``warn`` when their accuracy differs by more than ``fairness_max_gap`` *and* the difference
  is beyond chance: Fisher's exact test on the 2 x 2 table (correct, wrong) x (best, worst),
  two-sided, at ``alpha`` divided by the number of pairs of tested groups (Bonferroni: picking
  the extreme pair out of k groups is k(k-1)/2 comparisons). It is the exact test for two
  proportions, as the live-accuracy check's binomial test is for one.
- ``ok`` otherwise, saying why (gap within the limit, not beyond chance, or too few labels).

Never ``retrain``: retraining on the same data does not close a gap between groups.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from scipy import stats  # type: ignore[import-untyped]

from mltrail.config import MonitorParams
from mltrail.monitor.summary import scored_feedback
from mltrail.telemetry import Window


@dataclass(frozen=True)
class GroupAccuracy:
    name: str
    labelled: int
    correct: int
    tested: bool
    """Enough labels (``fairness_min_labelled``) to be compared."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.name,
            "labelled": self.labelled,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "tested": self.tested,
        }


@dataclass
class GroupCheck:
    """What the per-group accuracy of a window showed, and the level it leads to."""

    groups: list[GroupAccuracy]
    without_group: int
    """Labelled predictions that named no group (not counted in any)."""
    max_gap: float
    min_labelled: int
    level: str = "ok"
    why: str = ""
    gap: float | None = None
    best: str | None = None
    worst: str | None = None
    p_value: float | None = None
    alpha: float | None = None
    """The level a pair is tested at: ``monitor.alpha`` / the number of pairs."""
    pairs: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "why": self.why,
            "groups": [g.as_dict() for g in self.groups],
            "without_group": self.without_group,
            "gap": self.gap,
            "best": self.best,
            "worst": self.worst,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "pairs": self.pairs,
            "max_gap": self.max_gap,
            "min_labelled": self.min_labelled,
            "test": "Fisher's exact test, two-sided, best vs worst group",
        }


def check_groups(window: Window, classes: int, params: MonitorParams) -> GroupCheck | None:
    """Per-group live accuracy of ``window`` and its level; ``None`` when no labelled
    prediction of the window named a group (nothing to say)."""
    labelled, _ = scored_feedback(window, classes)
    counts: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    without = 0
    for p in labelled:
        if p.group_name is None:
            without += 1
            continue
        counts[p.group_name] += 1
        hits[p.group_name] += int(p.label) == window.feedback[p.prediction_id]
    if not counts:
        return None
    groups = [
        GroupAccuracy(name, n, hits[name], n >= params.fairness_min_labelled)
        for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    check = GroupCheck(groups, without, params.fairness_max_gap, params.fairness_min_labelled)
    tested = [g for g in groups if g.tested]
    untested = [g for g in groups if not g.tested]
    if untested:
        names = ", ".join(f"{g.name} ({g.labelled})" for g in untested)
        check.notes.append(
            f"not tested, fewer than {params.fairness_min_labelled} labelled predictions: {names}"
        )
    if len(tested) < 2:
        check.why = (
            f"{len(tested)} group{'s' if len(tested) != 1 else ''} with at least "
            f"{params.fairness_min_labelled} labelled predictions: nothing to compare"
        )
        return check
    best = max(tested, key=lambda g: (g.accuracy, g.labelled))
    worst = min(tested, key=lambda g: (g.accuracy, -g.labelled))
    check.best, check.worst = best.name, worst.name
    check.gap = best.accuracy - worst.accuracy
    check.pairs = len(tested) * (len(tested) - 1) // 2
    check.alpha = params.alpha / check.pairs
    table = [
        [best.correct, best.labelled - best.correct],
        [worst.correct, worst.labelled - worst.correct],
    ]
    check.p_value = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    summary = (
        f"live accuracy {best.accuracy:.3f} for {best.name} ({best.labelled} labelled) vs "
        f"{worst.accuracy:.3f} for {worst.name} ({worst.labelled}): gap {check.gap:.3f}"
    )
    if check.gap <= params.fairness_max_gap:
        check.why = f"{summary}, within the allowed {params.fairness_max_gap}"
    elif check.p_value < check.alpha:
        check.level = "warn"
        check.why = (
            f"{summary}, over the allowed {params.fairness_max_gap} beyond chance "
            f"(Fisher p={check.p_value:.2g} < {check.alpha:.2g})"
        )
    else:
        check.why = (
            f"{summary}, over the allowed {params.fairness_max_gap} but not beyond chance "
            f"(Fisher p={check.p_value:.2g}, tested at {check.alpha:.2g})"
        )
    return check
