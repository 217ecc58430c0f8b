"""``manifest.json``: what produced a model, written beside it by training, read by the server,
the monitor, promotion, the benchmark and ``mltrail lineage``.

git commit (and whether the tree was dirty) -> params and their hash -> the prepared data's
hashes -> the model file's sha256 (and those of the ONNX copy and the monitoring reference)
-> tracker run ids. :func:`mltrail.tracking.lineage.build_manifest` measures these; this module says
what the record is.

Decisions, and why:

- **Frozen, and unknown keys are refused** (``extra="forbid"``). A manifest is a record of
  what happened: nothing changes it after training, and a key this version does not know is
  a typo in a writer or a file from a newer mltrail. Read and written back, it would lose the
  key silently, and a server would serve a model whose manifest says more than it understood.
- **``schema_version``**, 1 by default: manifests written before the field existed have the
  same keys as version 1 (the older ones lack what later versions added, which has defaults
  here: ``model.flavor``, ``model.info``, ``git.dirty_files``). A manifest of a *higher*
  version is refused first, with a message that says to upgrade mltrail, rather than with a
  list of unknown keys. A change that adds or renames a key raises the version.
- **The JSON on disk keeps its keys**: the model dumps to exactly the keys the dict-built
  manifests had (optional entries such as ``model.info.onnx`` are left out when absent, not
  written as ``null``), so old readers, ``dvc``'s view of the file and ``/version`` see the same
  document.
- ``params``, ``metrics``, ``timings`` and ``libraries`` stay mappings: their keys are the
  stage's params section, the task's metrics and the installed packages, which differ by task
  and version; typing them here would repeat those definitions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from mltrail.config import Task
from mltrail.contracts.layout import MANIFEST_FILE
from mltrail.contracts.tasks import Flavor
from mltrail.errors import MltrailError
from mltrail.fsio import sha256_file, write_json

SCHEMA_VERSION = 1
"""The version this mltrail writes, and the highest it reads."""

FileStatus = Literal["matches", "differs", "missing"]


class ManifestError(MltrailError):
    """A model folder without a manifest, or with one that is not an mltrail manifest."""


class _Record(BaseModel):
    """A frozen part of the manifest; keys in ``optional_keys`` are left out when ``None``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    optional_keys: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in self.optional_keys:
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def to_json(self) -> dict[str, Any]:
        """The document as written to ``manifest.json``."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data


class GitState(_Record):
    """The commit trained from; whether tracked files differed from it, ignoring the files
    DVC itself writes (see :func:`mltrail.tracking.lineage.git_state`). ``None``: not known
    (no git)."""

    optional_keys = frozenset({"dirty_files_total"})

    commit: str | None
    dirty: bool | None
    dirty_files: list[str] | None = None
    """The changed files, at most ``mltrail.tracking.lineage.DIRTY_FILES_MAX`` of them."""
    dirty_files_total: int | None = None
    """How many changed files there were, when more than were named."""


class DataRecord(_Record):
    """The prepared data the model was trained on."""

    path: str
    content_sha256: str | None
    """The profile's hash of the rows themselves (independent of file formats)."""
    source_sha256: str | None
    """The sha256 of the source file the data was prepared from."""
    files: dict[str, str]
    """File name -> sha256, for every file of the prepared-data folder."""


class HashedFile(_Record):
    """A file of the model folder and the sha256 it had when training wrote it."""

    file: str
    sha256: str

    def check(self, folder: Path) -> tuple[FileStatus, str | None]:
        """Whether ``folder``'s copy is the one trained: its status and its actual sha256
        (``None`` when the file is missing)."""
        path = folder / self.file
        actual = sha256_file(path) if path.is_file() else None
        if actual is None:
            return "missing", None
        return ("matches" if actual == self.sha256 else "differs"), actual


class OnnxCopy(HashedFile):
    """The CNN as ONNX (``model.onnx``), what the server runs under ONNX Runtime."""

    opset: int
    outputs: list[str]


class ReferenceEntry(HashedFile):
    """The monitoring reference (``reference.npz``) and the held-out data it was built on."""

    optional_keys = frozenset({"source"})

    source: Literal["feedback", "test"] | None = None
    """``feedback``: held-out production feedback; ``test``: the test split. Absent in
    manifests written before references could come from feedback."""


class ModelInfo(_Record):
    """What serving needs to load the model and answer (absent entries: not this kind)."""

    optional_keys = frozenset({"architecture", "recipe", "input", "onnx", "reference"})

    classes: list[str] = Field(default_factory=list)
    architecture: str | None = None
    """The CNN's architecture (``mltrail.models.cnn``)."""
    recipe: dict[str, Any] | None = None
    """The CNN's training recipe."""
    input: str | None = None
    """The input the CNN expects, in words."""
    onnx: OnnxCopy | None = None
    reference: ReferenceEntry | None = None
    """``None`` for a model trained before monitoring references existed."""

    def extra_files(self) -> dict[str, HashedFile]:
        """The hashed files beside the model file, by role."""
        found: dict[str, HashedFile | None] = {"onnx": self.onnx, "reference": self.reference}
        return {role: entry for role, entry in found.items() if entry is not None}


class ModelRecord(HashedFile):
    """The model file, its flavor and what serving needs."""

    flavor: Flavor | Literal[""] = ""
    """``""`` in manifests written before the flavor was recorded."""
    info: ModelInfo = ModelInfo()

    def hashed_files(self) -> dict[str, HashedFile]:
        """Every file of the model folder the manifest hashes, by role (``model`` first)."""
        return {"model": HashedFile(file=self.file, sha256=self.sha256)} | self.info.extra_files()


class TrackingRefs(_Record):
    """Where the run is: mltrail's run id, its journal, and each backend's target."""

    run_id: str | None = None
    journal: str | None = None
    backends: dict[str, str] = Field(default_factory=dict)
    """Backend name -> its MLflow tracking URI or W&B project."""


class Host(_Record):
    machine: str
    system: str


class Manifest(_Record):
    """The lineage record of one trained model (see the module's docstring)."""

    schema_version: int = SCHEMA_VERSION
    task: Task
    stage: str
    """The DVC stage that trained the model (``train_text_baseline``, ...)."""
    created_at: str
    """UTC, ``%Y-%m-%dT%H:%M:%SZ``."""
    git: GitState
    params: dict[str, Any]
    """The stage's params section, as trained with."""
    params_sha256: str
    data: DataRecord
    model: ModelRecord
    tracking: TrackingRefs
    metrics: dict[str, float]
    timings: dict[str, float]
    libraries: dict[str, str]
    host: Host

    @property
    def model_version(self) -> str:
        """``<stage>@<first 12 hex of files_digest()>``: what the server, telemetry, the
        monitor, the registry tags and the releases call a model. It covers every file the
        manifest hashes, not the model file alone: a changed ONNX copy (what the server runs)
        or reference is another model, and must not answer under the old one's name."""
        return f"{self.stage}@{self.files_digest()[:12]}"

    def files_digest(self) -> str:
        """The sha256 of the lines ``<file name> <sha256>\\n`` of every hashed file (model,
        ONNX copy, reference), sorted by name."""
        entries = sorted((f.file, f.sha256) for f in self.model.hashed_files().values())
        text = "".join(f"{name} {digest}\n" for name, digest in entries)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_json(cls, data: Any, where: str = "the manifest") -> Manifest:
        """A manifest from its parsed JSON; :class:`ManifestError` saying what is wrong."""
        version = data.get("schema_version", 1) if isinstance(data, dict) else None
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ManifestError(
                f"{where} has schema_version {version}: it was written by a newer mltrail, and "
                f"this one reads versions up to {SCHEMA_VERSION}",
                hint="upgrade mltrail (pip install -U mltrail) to read it",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}" for e in exc.errors()
            )
            raise ManifestError(f"{where} is not an mltrail manifest: {problems}") from None

    @classmethod
    def read(cls, model_dir: Path) -> Manifest:
        path = model_dir / MANIFEST_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ManifestError(
                f"{model_dir} has no {MANIFEST_FILE}",
                hint="point at a model folder written by `mltrail train` (models/<task>/<tracker>)",
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path} is not an mltrail manifest: {exc}") from None
        return cls.from_json(data, str(path))

    def write(self, model_dir: Path) -> None:
        """Write ``model_dir/manifest.json`` atomically."""
        write_json(model_dir / MANIFEST_FILE, self.to_json())
