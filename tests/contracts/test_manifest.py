"""The manifest contract: manifests written by earlier versions load, the JSON keeps its keys,
a newer or malformed manifest is refused with a clear error, and the record is frozen."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mltrail.contracts.layout import MANIFEST_FILE
from mltrail.contracts.manifest import (
    SCHEMA_VERSION,
    Manifest,
    ManifestError,
    ModelInfo,
    OnnxCopy,
    ReferenceEntry,
)
from mltrail.fsio import sha256_file
from mltrail.tracking.lineage import build_manifest

DATA = Path(__file__).parent / "data"
OLD = ["manifest-text-0.1.json", "manifest-cifar10-0.1.json"]


def _folder(tmp_path: Path, fixture: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(DATA / fixture, folder / MANIFEST_FILE)
    return folder


def _files_digest(document: dict[str, Any]) -> str:
    """The documented digest (docs/serving.md), computed here from the JSON: the sorted lines
    ``<file> <sha256>`` of the model, ONNX and reference entries."""
    model = document["model"]
    info = model.get("info", {})
    entries = [model] + [info[k] for k in ("onnx", "reference") if info.get(k)]
    lines = sorted(f"{e['file']} {e['sha256']}\n" for e in entries)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _keys(document: Any) -> Any:
    """The shape of a JSON document: its keys, nested, without the values."""
    if isinstance(document, dict):
        return {k: _keys(v) for k, v in document.items()}
    return None


@pytest.mark.parametrize("fixture", OLD)
def test_a_manifest_of_the_untyped_version_loads_and_keeps_its_document(
    tmp_path: Path, fixture: str
) -> None:
    on_disk = json.loads((DATA / fixture).read_text())
    manifest = Manifest.read(_folder(tmp_path, fixture))
    assert manifest.schema_version == 1
    assert manifest.stage == on_disk["stage"] and manifest.task == on_disk["task"]
    assert manifest.model_version == f"{on_disk['stage']}@{_files_digest(on_disk)[:12]}"
    # The same document (plus the version): nothing dropped, nothing added as null.
    assert manifest.to_json() == on_disk | {"schema_version": 1}


def test_the_first_manifest_format_loads(tmp_path: Path) -> None:
    manifest = Manifest.read(_folder(tmp_path, "manifest-text-first.json"))
    assert manifest.model.flavor == "" and manifest.model.info == ModelInfo()
    assert manifest.model.info.classes == [] and manifest.model.info.reference is None
    assert manifest.git.dirty is False and manifest.git.dirty_files is None
    assert list(manifest.model.hashed_files()) == ["model"]


def test_the_cifar10_manifest_names_its_onnx_copy_and_reference(tmp_path: Path) -> None:
    manifest = Manifest.read(_folder(tmp_path, "manifest-cifar10-0.1.json"))
    info = manifest.model.info
    assert isinstance(info.onnx, OnnxCopy) and info.onnx.outputs == ["features", "logits"]
    assert isinstance(info.reference, ReferenceEntry) and info.reference.source == "test"
    assert list(manifest.model.hashed_files()) == ["model", "onnx", "reference"]
    assert manifest.tracking.backends == {"mlflow": "sqlite:////work/project/mlflow.db"}


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A model folder with a manifest written by this version's build_manifest."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.parquet", "test.parquet", "labels.json"):
        (data / name).write_bytes(b"rows")
    (data / "profile.json").write_text(json.dumps({"content_sha256": "c" * 64}))
    out = tmp_path / "model"
    out.mkdir()
    for name in ("model.pt", "model.onnx", "reference.npz"):
        (out / name).write_bytes(name.encode())
    info = ModelInfo(
        classes=["a", "b"],
        architecture="fast",
        recipe={"architecture": "fast", "batch_size": 128, "lr": 0.001},
        input="float32 N x 3 x 32 x 32 in [0, 1]",
        onnx=OnnxCopy(file="model.onnx", sha256=sha256_file(out / "model.onnx"), opset=18,
                      outputs=["features", "logits"]),
        reference=ReferenceEntry(file="reference.npz", sha256=sha256_file(out / "reference.npz"),
                                 source="feedback"),
    )  # fmt: skip
    manifest = build_manifest(
        task="cifar10", stage="train_cifar10_mlflow", params={"seed": 1}, data_dir=data,
        model_file=out / "model.pt", metrics={"accuracy": 0.5, "train_time_s": 1.0},
        tracking={"run_id": "r", "journal": None, "backends": {"mlflow": "sqlite:///m.db"}},
        timings={"stage_s": 1.0}, flavor="pytorch", model_info=info,
    )  # fmt: skip
    manifest.write(out)
    return out


def test_a_manifest_round_trips(trained: Path) -> None:
    manifest = Manifest.read(trained)
    assert manifest.schema_version == SCHEMA_VERSION
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    assert json.loads((trained / MANIFEST_FILE).read_text()) == manifest.to_json()
    assert manifest.data.content_sha256 == "c" * 64 and manifest.data.source_sha256 is None
    assert {e.check(trained)[0] for e in manifest.model.hashed_files().values()} == {"matches"}


def test_the_json_on_disk_keeps_the_keys_of_the_untyped_version(trained: Path) -> None:
    """Readers of the file (jq in CI and the Dockerfile, dvc, older servers) see the keys
    the dict-built manifests had, plus ``schema_version``."""
    written = json.loads((trained / MANIFEST_FILE).read_text())
    old = json.loads((DATA / "manifest-cifar10-0.1.json").read_text())
    libraries = (written.pop("libraries"), old.pop("libraries"))  # installed packages differ
    assert _keys(written) == _keys(old) | {"schema_version": None}
    assert set(libraries[0]) >= {"python", "mltrail"}


def test_the_version_covers_every_served_file(trained: Path) -> None:
    """A new ONNX copy or reference (its manifest hash updated) is another version: the
    server, telemetry and lineage must not call it by the old model's name."""
    document = json.loads((trained / MANIFEST_FILE).read_text())
    version = Manifest.from_json(document).model_version
    assert version == f"train_cifar10_mlflow@{_files_digest(document)[:12]}"
    for role in ("onnx", "reference"):
        changed = json.loads(json.dumps(document))
        changed["model"]["info"][role]["sha256"] = "0" * 64
        other = Manifest.from_json(changed).model_version
        assert other.startswith("train_cifar10_mlflow@") and other != version


def test_hashed_files_tell_a_changed_or_missing_file(trained: Path) -> None:
    files = Manifest.read(trained).model.hashed_files()
    (trained / "model.onnx").write_bytes(b"tampered")
    (trained / "reference.npz").unlink()
    status = {role: entry.check(trained) for role, entry in files.items()}
    assert status["model"][0] == "matches"
    assert status["onnx"] == ("differs", sha256_file(trained / "model.onnx"))
    assert status["reference"] == ("missing", None)


def test_a_manifest_of_a_newer_schema_is_refused_first(trained: Path) -> None:
    document = json.loads((trained / MANIFEST_FILE).read_text())
    document |= {"schema_version": SCHEMA_VERSION + 1, "new_key": 1}
    (trained / MANIFEST_FILE).write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="written by a newer mltrail") as caught:
        Manifest.read(trained)
    assert caught.value.hint is not None and "upgrade mltrail" in caught.value.hint


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.pop("stage"), "stage: Field required"),
        (lambda d: d["model"].pop("sha256"), "model.sha256: Field required"),
        (lambda d: d.update(stgae="x"), "stgae: Extra inputs are not permitted"),
        (lambda d: d["model"]["info"].update(onnx={"file": "m"}), "model.info.onnx.sha256"),
        (lambda d: d.update(task="audio"), "task: Input should be 'text' or 'cifar10'"),
    ],
)
def test_a_malformed_manifest_says_where(trained: Path, change: Any, says: str) -> None:
    document = json.loads((trained / MANIFEST_FILE).read_text())
    change(document)
    (trained / MANIFEST_FILE).write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="is not an mltrail manifest") as caught:
        Manifest.read(trained)
    assert says in str(caught.value)


def test_no_manifest_or_no_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"has no manifest\.json"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match="is not an mltrail manifest"):
        Manifest.read(tmp_path)


def test_a_manifest_is_frozen(trained: Path) -> None:
    manifest = Manifest.read(trained)
    with pytest.raises(ValidationError):
        manifest.stage = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        manifest.model.sha256 = "0" * 64  # type: ignore[misc]
