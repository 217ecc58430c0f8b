"""The CNN served by ONNX Runtime from ``model.onnx``: the same probabilities and the same
monitoring profile as under torch, without importing torch, and verified like the model file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mltrail.fsio import sha256_file
from mltrail.models.loading import CNN_RUNTIME_ENV, ModelLoadError, load


def _images(model_dirs: dict[str, Path], n: int = 40) -> np.ndarray:
    with np.load(model_dirs["image_data"] / "test.npz") as z:
        x = np.asarray(z["x"][:n])
    return x


def test_onnx_runtime_and_torch_give_the_same_probabilities_and_profiles(
    model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CNN_RUNTIME_ENV, raising=False)
    default = load(str(model_dirs["image"]), "image")
    assert default.runtime == "onnx"  # onnxruntime is installed and the model has model.onnx
    monkeypatch.setenv(CNN_RUNTIME_ENV, "torch")
    under_torch = load(str(model_dirs["image"]), "image")
    assert under_torch.runtime == "torch"
    monkeypatch.setenv(CNN_RUNTIME_ENV, "onnx")
    under_onnx = load(str(model_dirs["image"]), "image")
    assert under_onnx.runtime == "onnx" and under_onnx.version == under_torch.version
    x = _images(model_dirs)
    for batch in (x[:1], x):  # one image, and a batch (the ONNX graph's batch axis is free)
        p_torch, prof_torch = under_torch.predict(batch)
        p_onnx, prof_onnx = under_onnx.predict(batch)
        assert p_onnx.dtype == np.float64 and p_onnx.shape == p_torch.shape
        assert np.allclose(p_onnx, p_torch, atol=1e-5, rtol=0)
        assert np.array_equal(p_onnx.argmax(axis=1), p_torch.argmax(axis=1))
        names = list(prof_torch[0])
        assert [list(p) for p in prof_onnx] == [names] * len(batch)
        assert any(n.startswith("proj_") for n in names)  # the penultimate features, projected
        got = np.array([[p[n] for n in names] for p in prof_onnx])
        want = np.array([[p[n] for n in names] for p in prof_torch])
        assert np.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_the_onnx_path_never_imports_torch(model_dirs: dict[str, Path]) -> None:
    script = (
        "import sys, numpy as np\n"
        "import mltrail.cli, mltrail.serve.app\n"
        "from mltrail.models.loading import load\n"
        f"m = load({str(model_dirs['image'])!r}, 'image')\n"
        "probs, profiles = m.predict(np.zeros((3, 3, 32, 32), np.float32))\n"
        "assert m.runtime == 'onnx' and probs.shape == (3, 10) and 'proj_0' in profiles[0]\n"
        "print(sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != CNN_RUNTIME_ENV}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_changed_or_missing_onnx_model_is_refused(
    model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CNN_RUNTIME_ENV, raising=False)
    copy = tmp_path / "m"
    shutil.copytree(model_dirs["image"], copy)
    with (copy / "model.onnx").open("r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff")
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing or differs"):
        load(str(copy), "image")
    (copy / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing or differs"):
        load(str(copy), "image")
    # Forced to torch, the folder is still not the one trained: refused all the same.
    monkeypatch.setenv(CNN_RUNTIME_ENV, "torch")
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing or differs"):
        load(str(copy), "image")


def test_a_model_without_an_onnx_copy_runs_under_torch(
    model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model trained before model.onnx existed: torch in ``auto``, a clear error in ``onnx``."""
    copy = tmp_path / "m"
    shutil.copytree(model_dirs["image"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["model"]["info"]["onnx"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "model.onnx").unlink()
    monkeypatch.setenv(CNN_RUNTIME_ENV, "auto")
    assert load(str(copy), "image").runtime == "torch"
    monkeypatch.setenv(CNN_RUNTIME_ENV, "onnx")
    with pytest.raises(ModelLoadError, match="has no ONNX copy") as info:
        load(str(copy), "image")
    assert "dvc repro" in str(info.value)
    monkeypatch.setenv(CNN_RUNTIME_ENV, "tensorflow")
    with pytest.raises(ModelLoadError, match="expected one of auto, onnx, torch"):
        load(str(model_dirs["image"]), "image")


def test_the_manifest_names_the_onnx_copy(model_dirs: dict[str, Path]) -> None:
    info = json.loads((model_dirs["image"] / "manifest.json").read_text())["model"]["info"]
    assert info["onnx"] == {
        "file": "model.onnx",
        "sha256": sha256_file(model_dirs["image"] / "model.onnx"),
        "opset": 17,
        "outputs": ["features", "logits"],
    }
