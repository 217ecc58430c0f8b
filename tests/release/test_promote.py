"""`mltrail promote` cannot be poisoned: every file the manifest hashes is checked before the
copy, an existing release that is not the model it names is copied anew, and two promotions
at once (two real processes) both land in the pointer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mltrail.config import Params, Task, load_params
from mltrail.contracts.manifest import Manifest, ModelInfo
from mltrail.contracts.pointer import Pointer
from mltrail.fsio import sha256_file
from mltrail.models.loading import ModelLoadError, verify
from mltrail.release.promote import promote, registered_name
from mltrail.tracking.lineage import build_manifest
from tests.conftest import PARAMS

MODEL_FILES = {"text": "model.npz", "cifar10": "model.pt"}


def _model(folder: Path, task: Task = "text", tag: str = "") -> Path:
    """A model folder as training writes it: model file, ONNX copy and reference, hashed.
    (Promotion copies and checks files; it never loads them.)"""
    data = folder.parent / f"{folder.name}-data"
    data.mkdir(parents=True)
    (data / "train.parquet").write_bytes(b"rows")
    folder.mkdir(parents=True)
    model_file = MODEL_FILES[task]
    for name in (model_file, "model.onnx", "reference.npz"):
        (folder / name).write_bytes(f"{name} {tag}".encode())
    info = ModelInfo.model_validate({
        "classes": ["neg", "pos"],
        "onnx": {"file": "model.onnx", "sha256": sha256_file(folder / "model.onnx"), "opset": 18,
                 "outputs": ["features", "logits"]},
        "reference": {"file": "reference.npz", "sha256": sha256_file(folder / "reference.npz")},
    })  # fmt: skip
    build_manifest(
        task=task, stage=f"train_{task}_baseline", params={"C": 1.0}, data_dir=data,
        model_file=folder / model_file, tracking={}, metrics={"accuracy": 0.9}, timings={},
        flavor="sklearn", model_info=info,
    ).write(folder)  # fmt: skip
    return folder


def _params(root: Path) -> Params:
    releases = root / "releases"
    overrides = [
        f"retrain.releases_dir={releases}",
        f"retrain.pointer_file={releases}/serving.json",
    ]
    return load_params(PARAMS, overrides)


@pytest.mark.parametrize("name", ["model.onnx", "reference.npz", "model.npz"])
def test_a_tampered_file_is_not_promoted(tmp_path: Path, name: str) -> None:
    model = _model(tmp_path / "model")
    with (model / name).open("ab") as f:
        f.write(b"tampered")
    params = _params(tmp_path)
    with pytest.raises(ModelLoadError, match=rf"{name} is missing or differs.*refusing to load"):
        promote(model, params, {})
    assert not (tmp_path / "releases" / "text").exists()
    assert Pointer.read(Path(params.retrain.pointer_file)) == Pointer()
    with pytest.raises(ModelLoadError, match=rf"{name} is missing or differs"):
        verify(model)  # what the server and the monitor call: they refuse it too


def test_a_missing_reference_is_not_promoted(tmp_path: Path) -> None:
    model = _model(tmp_path / "model")
    (model / "reference.npz").unlink()
    with pytest.raises(ModelLoadError, match=r"reference\.npz is missing.*not there"):
        promote(model, _params(tmp_path), {})


def _poison(release: Path, model: Path, how: str) -> None:
    """The release folder as an earlier, poisoned promotion left it."""
    shutil.copytree(model, release)
    if how == "onnx":
        (release / "model.onnx").write_bytes(b"serves one class for everything")
    else:  # a manifest of another model, its hashes matching the swapped files
        document = json.loads((release / "manifest.json").read_text())
        (release / "model.onnx").write_bytes(b"serves one class for everything")
        document["model"]["info"]["onnx"]["sha256"] = sha256_file(release / "model.onnx")
        document["created_at"] = "2000-01-01T00:00:00Z"
        (release / "manifest.json").write_text(json.dumps(document))


@pytest.mark.parametrize("how", ["onnx", "manifest"])
def test_promoting_the_genuine_model_replaces_a_poisoned_release(tmp_path: Path, how: str) -> None:
    model = _model(tmp_path / "model")
    manifest = Manifest.read(model)
    params = _params(tmp_path)
    release = tmp_path / "releases" / "text" / manifest.model_version.replace("@", "-")
    _poison(release, model, how)
    record = promote(model, params, {"why": "test"})
    assert "replaced" in record and str(release) in record["replaced"]
    assert verify(release) == manifest
    for name in ("model.npz", "model.onnx", "reference.npz", "manifest.json"):
        assert (release / name).read_bytes() == (model / name).read_bytes()
    pointer = Pointer.read(Path(params.retrain.pointer_file))
    assert pointer.text == str(release.resolve())
    history = (tmp_path / "releases" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["replaced"] == record["replaced"]


def test_a_sound_release_is_reused(tmp_path: Path) -> None:
    model = _model(tmp_path / "model")
    params = _params(tmp_path)
    first = promote(model, params, {})
    stamp = (Path(first["release"]) / "model.npz").stat().st_mtime_ns
    second = promote(model, params, {})
    assert "replaced" not in first and "replaced" not in second
    assert (Path(second["release"]) / "model.npz").stat().st_mtime_ns == stamp


# Each process promotes one task; Pointer.read waits after reading until the other process
# has read too (or 2 s passed): without the lock both read the empty pointer and the second
# write drops the first one's model; with it, the second read waits for the first write.
PROMOTE_SCRIPT = """
import sys, time
from pathlib import Path
from mltrail.config import load_params
from mltrail.contracts import pointer as pointer_module
from mltrail.release.promote import promote, registered_name

model, root, me, other = map(Path, sys.argv[1:5])
real_read = pointer_module.Pointer.read.__func__

def slow_read(cls, path):
    found = real_read(cls, path)
    me.touch()
    end = time.monotonic() + 2
    while not other.exists() and time.monotonic() < end:
        time.sleep(0.01)
    return found

pointer_module.Pointer.read = classmethod(slow_read)
params = load_params(Path(sys.argv[5]), [f"retrain.releases_dir={root / 'releases'}",
                                         f"retrain.pointer_file={root / 'releases/serving.json'}"])
promote(model, params, {})
"""


def test_two_promotions_at_once_both_land_in_the_pointer(tmp_path: Path) -> None:
    text = _model(tmp_path / "text", "text")
    image = _model(tmp_path / "image", "cifar10")
    marks = tmp_path / "read-text", tmp_path / "read-image"
    script = tmp_path / "promote.py"
    script.write_text(PROMOTE_SCRIPT)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(model),
                str(tmp_path),
                str(me),
                str(other),
                str(PARAMS),
            ]
        )
        for model, me, other in ((text, *marks), (image, *reversed(marks)))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    pointer = Pointer.read(tmp_path / "releases" / "serving.json")
    assert set(pointer.sources()) == {"text", "image"}
    assert Manifest.read(Path(str(pointer.text))).task == "text"
    assert Manifest.read(Path(str(pointer.image))).task == "cifar10"


def test_each_task_is_registered_under_its_own_name() -> None:
    """Promoting a CIFAR-10 model must not move the alias servers follow for the text model."""
    params = load_params(PARAMS)
    assert registered_name("text", params) == params.retrain.registered_model == "mltrail-text"
    assert registered_name("cifar10", params) == "mltrail-cifar10"
    retrain = params.retrain.model_copy(update={"task": "cifar10", "registered_model": "shop"})
    image_loop = params.model_copy(update={"retrain": retrain})
    assert registered_name("cifar10", image_loop) == "shop"  # the loop's task: its own name
    assert registered_name("text", image_loop) == "mltrail-text"
