"""The telemetry record: the one definition of what a prediction, a feedback and a captured
input hold, which the server writes and the monitor and the retrain loop read back.

Every store derives its tables' columns from these classes (:data:`TABLES`), and a
window is read back as :class:`Prediction` objects, not as dicts with their own column
list: a field added here is a field every store writes and every reader sees, or a test
that fails. The classes are mutable dataclasses with slots, not frozen ones, because the
request path builds one per prediction and a frozen dataclass's ``__init__`` is several
times slower.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class Prediction:
    """One answered prediction: what the model said, how fast, about what kind of input."""

    prediction_id: str
    time: float
    endpoint: str
    model_version: str
    label: int
    class_name: str
    confidence: float
    inference_ms: float
    profile: dict[str, float] = field(default_factory=dict)
    group_name: str | None = None
    """The group the client said the input belongs to (``group`` in the request): what the
    monitor's per-group live accuracy is measured over; ``None`` when not given."""
    kind: str = "prediction"


@dataclass(slots=True)
class Feedback:
    """The true label of a prediction, given later (``POST /feedback``); the latest counts."""

    prediction_id: str
    time: float
    label: int
    kind: str = "feedback"


@dataclass(slots=True)
class Capture:
    """A prediction's input, kept (``capture_inputs``) so that labelled production data can
    be added to the training set: a text, or an image as base64 of its 3 x 32 x 32 bytes."""

    prediction_id: str
    time: float
    input: str
    kind: str = "capture"


Record = Prediction | Feedback | Capture


def _columns(kind: type[Record]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind) if f.name != "kind")


@dataclass(frozen=True)
class Table:
    """Where a store keeps one kind of record: a table whose columns are the record's fields,
    in their order (keyed so that a record written twice is stored once)."""

    name: str
    record: type[Record]
    columns: tuple[str, ...]


PREDICTION_COLUMNS = _columns(Prediction)
TABLES = (
    Table("predictions", Prediction, PREDICTION_COLUMNS),
    Table("feedback", Feedback, _columns(Feedback)),
    Table("inputs", Capture, _columns(Capture)),
)


def record_from_dict(values: dict[str, Any]) -> Record:
    """A record from its ``dataclasses.asdict`` form (the spill files' lines)."""
    values = dict(values)
    kind = values.pop("kind", "prediction")
    if kind == "feedback":
        return Feedback(**values)
    if kind == "capture":
        return Capture(**values)
    return Prediction(**values)


# -- what readers ask for and get --------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """Which predictions a window holds: a time range [since, until), an endpoint, a model
    version (``None``: any)."""

    since: float | None = None
    until: float | None = None
    endpoint: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Labelled:
    """A served input whose true label came back as feedback (the latest label counts)."""

    prediction_id: str
    time: float
    model_version: str
    predicted: int
    label: int
    input: str
    group_name: str | None = None


@dataclass
class Window:
    """Predictions (oldest first) and the feedback labels given for them (the latest each)."""

    predictions: list[Prediction] = field(default_factory=list)
    feedback: dict[str, int] = field(default_factory=dict)
