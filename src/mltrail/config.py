"""Typed, validated params: params.yaml, one section per stage, plus ``--set`` overrides.

Every key is declared here once, with its type and default. Unknown keys and wrong types are
errors that name the key (``text.sampel_rows: unknown key``), because a typo that is silently
ignored trains the wrong model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mltrail.errors import ParamsError
from mltrail.paths import MIRROR_ENV as MIRROR_ENV  # declared with the other path variables
from mltrail.paths import absolute, resolve_fields
from mltrail.settings import PATH, SQLITE_URI, Environment

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Task = Literal["text", "cifar10"]
"""What a pipeline trains; each is registered in :mod:`mltrail.contracts.tasks`."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MirrorFile(_Section):
    """A file a mirror folder may hold instead of the official download."""

    file: str = Field(min_length=1)
    sha256: Sha256


class DataSource(_Section):
    """Where a dataset comes from, tried in this order: ``path``, a mirror folder, ``url``.

    - ``path``: a local file used as is (its sha256 is checked only if ``path_sha256`` is set,
      and always recorded in the data profile).
    - mirror folder (``data.mirror`` or ``$MLTRAIL_DATA_MIRROR``): the files listed in
      ``mirror``, each with its own checksum, then the URL's file name checked against ``sha256``.
    - ``url``: downloaded once into the stage's download folder and checked against ``sha256``.
    """

    url: str | None = None
    sha256: Sha256 | None = None
    mirror: tuple[MirrorFile, ...] = ()
    path: Annotated[str | None, PATH] = None
    path_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _has_some_origin(self) -> DataSource:
        if self.url is None and self.path is None and not self.mirror:
            raise ValueError("a data source needs at least one of url, path or mirror")
        return self


class DataParams(_Section):
    """Settings shared by the data stages."""

    mirror: Annotated[str | None, PATH] = None
    """Folder with local copies of the datasets; ``$MLTRAIL_DATA_MIRROR`` when unset."""
    download_timeout_s: float = Field(default=60.0, gt=0)

    def mirror_dir(self) -> Path | None:
        value = self.mirror or Environment.read().data_mirror
        return absolute(value) if value else None


class TextParams(_Section):
    """Stage ``prepare_data_text``: a labelled text CSV (or the aclImdb archive) to a split."""

    source: DataSource
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = Field(default=None, min_length=1)
    """A column naming each row's group (e.g. a language or a region) for fairness metrics:
    carried through preparation as the split's ``group`` column, measured per group by
    training (accuracy, F1, support, selection rate; Fairlearn's MetricFrame) and, from
    feedback, by the monitor. Every row needs a value. ``null``: no group metrics."""
    class_names: dict[str, Annotated[str, Field(min_length=1)]] | None = None
    """Label value as found in the data -> class name, e.g. ``{"0": neg, "1": pos}`` for
    IMDB's digits: the names reach labels.json, the models, the API's ``class_name``, the
    reports and the monitor. Every value in the data needs a name, and no two values may
    share one. Class indices keep the order of the values (numeric when they are integers),
    so naming them never renumbers a class. ``null``: the values are the names."""
    encoding_errors: Literal["replace", "strict"] = "replace"
    """Bytes that are not UTF-8: ``replace`` them with U+FFFD (counted in the profile), or fail."""
    missing_labels: Literal["error", "drop"] = "error"
    strip_html: bool = True
    """Replace HTML tags such as ``<br />`` (as in IMDB) by spaces."""
    drop_duplicates: bool = True
    """Keep the first of identical texts, so no text sits in both train and test."""
    min_chars: int = Field(default=1, ge=1)
    sample_rows: int | None = Field(default=None, gt=0)
    """Seeded, stratified sample of the cleaned rows; ``null`` uses all of them."""
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42
    feedback_dir: Annotated[str | None, PATH] = "data/feedback/text"
    """Labelled production data (``mltrail retrain``) added to the training split."""
    feedback_repeat: int = Field(default=1, ge=1, le=100)
    """Each feedback row joins the training split this many times: recent production data
    is scarce next to the original dataset, and up-weighting it is what makes a retrain
    learn the shift."""
    reference_min_feedback: int = Field(default=100, ge=0)
    """The newest held-out feedback batch becomes the monitoring reference of the models
    trained on this data when it has at least this many rows: a model retrained for shifted
    traffic is then watched against that traffic, not against the data it moved away from.
    0: always the test split."""

    @field_validator("class_names", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        """YAML reads ``{0: neg}`` with an integer key; a label value is text either way."""
        if isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("class_names")
    @classmethod
    def _one_value_per_name(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        keys: dict[str, list[str]] = {}
        for key, name in value.items():
            keys.setdefault(name, []).append(key)
        clashes = [
            f"{', '.join(map(repr, k))} -> {name!r}" for name, k in keys.items() if len(k) > 1
        ]
        if clashes:
            raise ValueError(
                "two label values cannot share a class name (it would merge the classes): "
                + "; ".join(clashes)
            )
        return value


class Cifar10Params(_Section):
    """Stage ``prepare_cifar10``: the CIFAR-10 python archive to NPZ arrays in [0, 1]."""

    source: DataSource
    train_size: int | None = Field(default=None, gt=0)
    """Seeded, stratified subset of the 50,000 training images; ``null`` keeps all."""
    test_size: int | None = Field(default=None, gt=0)
    seed: int = 42
    feedback_dir: Annotated[str | None, PATH] = "data/feedback/cifar10"
    """Labelled production images (``mltrail retrain``) added to the training split."""
    feedback_repeat: int = Field(default=1, ge=1, le=100)
    """Each feedback image joins the training split this many times (see text)."""
    reference_min_feedback: int = Field(default=100, ge=0)
    """The newest held-out feedback batch becomes the monitoring reference (see text)."""


class TrainTextParams(_Section):
    """Stages ``train_text_*``: TF-IDF + logistic regression, one scikit-learn pipeline."""

    max_features: int | None = Field(default=None, gt=0)
    ngram_max: int = Field(default=1, ge=1, le=3)
    """TF-IDF n-grams from 1 to ``ngram_max`` words."""
    min_df: int = Field(default=1, ge=1)
    sublinear_tf: bool = False
    C: float = Field(default=1.0, gt=0)
    max_iter: int = Field(default=1000, gt=0)
    seed: int = 42


class TrainCifar10Params(_Section):
    """Stages ``train_cifar10_*``: a CNN in PyTorch (see ``mltrail.models.cnn``)."""

    recipe: Literal["fast", "paper"] = "fast"
    """``fast``: mltrail's recipe; ``paper``: the paper's CNN, Adam 1e-3, batch 32."""
    epochs: int = Field(default=4, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    """``null``: the recipe's."""
    lr: float | None = Field(default=None, gt=0)
    """``null``: the recipe's."""
    seed: int = 42
    device: str = "auto"
    """``auto`` (a GPU when present), ``cpu``, ``cuda``, ``cuda:1``..."""


class TrackingParams(_Section):
    """Where runs are tracked; not a stage's param (changing it does not retrain)."""

    experiment: str = "mltrail"
    mlflow_uri: Annotated[str, SQLITE_URI] = "sqlite:///mlflow.db"
    """Any MLflow tracking URI: a local SQLite file (default) or a server ``http://host:5000``."""
    wandb_project: str = "mltrail"
    wandb_mode: Literal["offline", "online"] = "offline"
    wandb_dir: Annotated[str, PATH] = "."
    """W&B writes its run files under ``<wandb_dir>/wandb/``."""
    journal_dir: Annotated[str, PATH] = ".mltrail/runs"
    """Every tracked run is journalled here first, then exported (see mltrail.tracking)."""
    retry_for_s: float = Field(default=20.0, ge=0)
    """How long the background exporter retries a backend that is down before leaving the
    run for ``mltrail tracking sync``."""
    wait: bool = False
    """Wait for the export to finish before the training command exits."""


class CleanModelsParams(_Section):
    """Stage ``clean_models``: remove model folders no stage produces, and leftovers."""

    keep: tuple[str, ...] = ()
    """Extra folders under models/ (relative, e.g. ``text/handmade``) never to remove."""


class BenchParams(_Section):
    """``mltrail bench``: the tracking comparison matrix (the paper's Tables 2-7)."""

    tasks: tuple[Task, ...] = ("text", "cifar10")
    trackers: tuple[str, ...] = ("none", "mlflow", "wandb", "mlflow,wandb")
    """Tracker specs run through mltrail's tracking layer."""
    paper_style: tuple[Literal["mlflow", "wandb"], ...] = ("mlflow", "wandb")
    """Tools also run the paper's way: the client inline in the training."""
    repeats: int = Field(default=3, gt=0)
    text_rows: int | None = Field(default=None, gt=0)
    """IMDB sample size; ``null``: all rows."""
    cifar10_train_size: int | None = Field(default=None, gt=0)
    """CIFAR-10 training subset; ``null``: all 50,000."""
    cifar10_test_size: int | None = Field(default=None, gt=0)
    """CIFAR-10 test subset; ``null``: all 10,000."""


class LatencySlo(_Section):
    """Per-prediction model time (``inference_ms`` in telemetry), in milliseconds."""

    p95_ms: float = Field(default=50.0, gt=0)
    p99_ms: float = Field(default=200.0, gt=0)
    regression_ratio: float = Field(default=1.2, ge=1)
    """A new model version is slower than the one it replaced when its median model time is
    this many times the old one's *and* a one-sided Mann-Whitney U test says so at ``alpha``
    (``mltrail.monitor.audit``): both, so that neither noise nor a trivial slowdown warns."""
    regression_min_samples: int = Field(default=50, gt=1)
    """Predictions needed of each version before the regression is tested (fewer: not
    tested, and the check says so)."""


class MonitorParams(_Section):
    """``mltrail monitor``: what a window is, and when it says ok, warn or retrain."""

    window: int = Field(default=200, gt=0)
    """The newest N predictions of the model are one window."""
    min_predictions: int = Field(default=100, gt=0)
    """Fewer in the window: no drift tests (ok, with a reason saying so)."""
    alpha: float = Field(default=0.01, gt=0, lt=1)
    """Chance that an in-distribution window raises drift (Bonferroni over the tests)."""
    min_feedback: int = Field(default=30, gt=0)
    """Labelled predictions needed before live accuracy counts."""
    max_accuracy_drop: float = Field(default=0.05, ge=0, le=1)
    """Retrain when live accuracy is lower than the reference's by more than this."""
    retrain_on_drift: bool = True
    """Retrain on data drift that also moved the predictions, even before labels arrive."""
    fairness_max_gap: float = Field(default=0.10, ge=0, le=1)
    """Warn when live accuracy (from feedback) of the best and the worst group differs by
    more than this, beyond chance (Fisher's exact test at ``alpha``, Bonferroni over the
    pairs of groups tested). Predictions carry a group when the client sends one."""
    fairness_min_labelled: int = Field(default=30, gt=0)
    """Labelled predictions a group needs before it is tested; smaller groups are listed."""
    latency: LatencySlo = LatencySlo()


class RetrainParams(_Section):
    """``mltrail retrain``: the loop from a retrain decision to a promoted model."""

    task: Task = "text"
    stage: str = "train_text_mlflow"
    """The DVC stage whose model serves (re-run, with the stages it depends on)."""
    registered_model: str = "mltrail-text"
    """MLflow registered model name of ``task``'s model; the promoted version gets the alias
    below. A model of another task is registered as ``<tracking.experiment>-<task>``."""
    alias: str = "production"
    eval_fraction: float = Field(default=0.3, gt=0, lt=1)
    """Share of the new feedback kept out of training to compare the models on."""
    min_improvement: float = Field(default=0.0, ge=0)
    """The candidate must beat the serving model on recent feedback by more than this, and
    be no worse on the held-out test split than ``max_test_drop``."""
    max_test_drop: float = Field(default=0.02, ge=0, le=1)
    releases_dir: Annotated[str, PATH] = "releases"
    """Promoted models are copied here (immutable, by version) for the pointer to name."""
    pointer_file: Annotated[str, PATH] = "releases/serving.json"
    """``{"text": <folder>, "image": <folder>}``: the server reloads when it changes."""


BENCH_PRESETS: dict[str, dict[str, Any]] = {
    # IMDB 5,000 rows, CIFAR-10 5,000 / 1,000 images, one repetition: about 3 minutes.
    "quick": {
        "repeats": 1,
        "text_rows": 5000,
        "cifar10_train_size": 5000,
        "cifar10_test_size": 1000,
    },
    # All of both datasets, three repetitions: the committed report.
    "full": {
        "repeats": 3,
        "text_rows": None,
        "cifar10_train_size": None,
        "cifar10_test_size": None,
    },
}


class Params(_Section):
    """The whole of params.yaml."""

    data: DataParams = DataParams()
    text: TextParams
    cifar10: Cifar10Params | None = None
    """Optional: a project made by ``mltrail init`` classifies text only and has none."""
    train_text: TrainTextParams = TrainTextParams()
    train_cifar10: TrainCifar10Params = TrainCifar10Params()
    tracking: TrackingParams = TrackingParams()
    clean_models: CleanModelsParams = CleanModelsParams()
    bench: BenchParams = BenchParams()
    monitor: MonitorParams = MonitorParams()
    retrain: RetrainParams = RetrainParams()

    def dataset(self, task: Task) -> TextParams | Cifar10Params:
        """The data section of ``task``, or an error saying that params.yaml has none."""
        section = self.text if task == "text" else self.cifar10
        if section is None:
            raise ParamsError(
                f"params.yaml has no {task} section",
                hint=f"add a {task} section (see the mltrail repository's params.yaml); a "
                "project made by `mltrail init` classifies text only",
            )
        return section

    def cifar10_section(self) -> Cifar10Params:
        section = self.dataset("cifar10")
        assert isinstance(section, Cifar10Params)
        return section


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ParamsError(
            f"--set {item!r}: expected KEY=VALUE with a dotted key",
            hint="for example --set text.sample_rows=5000",
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ParamsError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``KEY=VALUE`` override set (nested dicts created)."""
    result: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ParamsError(f"--set {item!r}: {where} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(model, error["loc"][:-1])
        return f"{loc}: unknown key" + (f" (valid keys: {', '.join(valid)})" if valid else "")
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    return f"{loc or '(top level)'}: {error['msg']} (got {error.get('input')!r})"


def _valid_keys(model: type[BaseModel], loc: Iterable[Any]) -> list[str]:
    """The field names of the section at ``loc`` (best effort, for error messages)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
        args = getattr(current, "__args__", ())  # Optional[...] / tuple[...]
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def validate_params(raw: Mapping[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, Params) for e in exc.errors()]
        raise ParamsError(
            f"{origin} is invalid:\n    " + "\n    ".join(lines),
            hint="fix params.yaml or the --set override; `mltrail params show` prints the result",
        ) from None


def resolve_params(params: Params, base: Path | None = None) -> Params:
    """``params`` with every local path absolute, relative ones taken against ``base`` (the
    folder the command was run in): each field declared to hold one (``Annotated[..., PATH]``
    or ``SQLITE_URI``: the data mirror, the sources' ``path``, the feedback folders, the
    tracking journal and W&B folders, the MLflow URI, the releases folder and the pointer), by
    the same mechanism as server settings (``mltrail.paths.resolve_fields``). The data mirror
    is ``$MLTRAIL_DATA_MIRROR`` when ``data.mirror`` is null. Done once, where params are
    loaded, so a subprocess, a DVC stage or a ``chdir`` later on reads the same files."""
    mirror = params.data.mirror or Environment.read().data_mirror
    data = params.data.model_copy(update={"mirror": mirror})
    return resolve_fields(params.model_copy(update={"data": data}), base)


def load_params(path: Path, overrides: Iterable[str] = (), base: Path | None = None) -> Params:
    """Read ``path`` (params.yaml), apply ``--set`` overrides, validate, and make its paths
    absolute against ``base`` (the working directory when None; see ``resolve_params``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(
            f"params file {path} does not exist",
            hint="run from the project root or pass --params PATH",
        ) from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, not {type(raw).__name__}")
    params = validate_params(apply_overrides(raw, overrides), origin=str(path))
    return resolve_params(params, base)
