"""The lineage manifest's git state (what counts as a dirty tree) and ``mltrail lineage``:
the check of every hashed file, its exit status, its JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mltrail.cli import LINEAGE_MISMATCH, main
from mltrail.contracts.layout import MANIFEST_FILE
from mltrail.contracts.manifest import Manifest, ModelInfo
from mltrail.fsio import sha256_file
from mltrail.tracking.lineage import DIRTY_FILES_MAX, build_manifest, git_state


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a source file and the files DVC writes, all committed."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "data").mkdir()
    files = {
        "src/train.py": "print('train')\n",
        "dvc.yaml": "stages: {}\n",
        "dvc.lock": "schema: '2.0'\n",
        ".gitignore": "/mlflow.db\n",
        "data/.gitignore": "/prepared\n",
        "data/batch.parquet.dvc": "outs:\n- md5: 0\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "start")
    return root


def test_a_clean_tree_is_clean(repo: Path) -> None:
    state = git_state(repo)
    assert len(state["commit"]) == 40
    assert state["dirty"] is False and state["dirty_files"] == []


def test_what_dvc_writes_does_not_make_the_tree_dirty(repo: Path) -> None:
    """dvc repro rewrites dvc.lock between stages, dvc add writes *.dvc and .gitignore."""
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {train: {}}\n")
    (repo / "data/.gitignore").write_text("/prepared\n/raw\n")
    (repo / ".gitignore").write_text("/mlflow.db\n/models\n")
    (repo / "data/batch.parquet.dvc").write_text("outs:\n- md5: 1\n")
    _git(repo, "add", "dvc.lock")  # staged or not: the same
    (repo / "untracked.py").write_text("x = 1\n")  # untracked files never count
    state = git_state(repo)
    assert state["dirty"] is False and state["dirty_files"] == []


def test_a_changed_source_file_makes_it_dirty_and_is_named(repo: Path) -> None:
    (repo / "dvc.lock").write_text("changed by dvc\n")
    (repo / "src/train.py").write_text("print('changed')\n")
    (repo / "dvc.yaml").write_text("stages: {x: {cmd: echo}}\n")  # the pipeline is not DVC's
    state = git_state(repo)
    assert state["dirty"] is True
    assert state["dirty_files"] == ["dvc.yaml", "src/train.py"]


def test_a_rename_names_both_paths(repo: Path) -> None:
    _git(repo, "mv", "src/train.py", "src/fit.py")
    assert git_state(repo)["dirty_files"] == ["src/fit.py", "src/train.py"]


def test_many_changed_files_are_capped_and_counted(repo: Path) -> None:
    for i in range(DIRTY_FILES_MAX + 5):
        (repo / f"src/m{i:03d}.py").write_text("x = 1\n")
    _git(repo, "add", "-A")
    state = git_state(repo)
    assert len(state["dirty_files"]) == DIRTY_FILES_MAX
    assert state["dirty_files_total"] == DIRTY_FILES_MAX + 5


def test_outside_a_repository_nothing_is_claimed(tmp_path: Path) -> None:
    state = git_state(tmp_path)
    assert state == {"commit": None, "dirty": None, "dirty_files": None}


@pytest.fixture
def model_dir(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model folder as training writes it: a model file, an ONNX copy and a reference,
    each hashed in the manifest (trained in the dirty repository above)."""
    (repo / "src/train.py").write_text("print('uncommitted')\n")
    monkeypatch.chdir(repo)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.parquet").write_bytes(b"rows")
    out = tmp_path / "model"
    out.mkdir()
    for name in ("model.npz", "model.onnx", "reference.npz"):
        (out / name).write_bytes(name.encode())
    info = ModelInfo.model_validate({
        "classes": ["neg", "pos"],
        "onnx": {"file": "model.onnx", "sha256": sha256_file(out / "model.onnx"), "opset": 18,
                 "outputs": ["features", "logits"]},
        "reference": {"file": "reference.npz", "sha256": sha256_file(out / "reference.npz")},
    })  # fmt: skip
    manifest = build_manifest(
        task="text", stage="train_text_baseline", params={"C": 1.0}, data_dir=data,
        model_file=out / "model.npz", tracking={}, metrics={"accuracy": 0.9}, timings={},
        flavor="sklearn", model_info=info,
    )  # fmt: skip
    manifest.write(out)
    return out


def test_lineage_passes_when_every_hashed_file_matches(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lineage", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert text.count("(matches the file)") == 3
    assert "(dirty tree: src/train.py)" in text


@pytest.mark.parametrize("name", ["model.npz", "model.onnx", "reference.npz"])
def test_lineage_exits_non_zero_when_a_hashed_file_differs_or_is_missing(
    model_dir: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (model_dir / name).write_bytes(b"tampered")
    assert main(["lineage", str(model_dir)]) == LINEAGE_MISMATCH == 2
    (wrong,) = [line for line in capsys.readouterr().out.splitlines() if "DOES NOT" in line]
    assert f"{name} sha256" in wrong
    (model_dir / name).unlink()
    assert main(["lineage", str(model_dir)]) == 2
    out = capsys.readouterr().out
    assert "MISSING" in out and out.count("(matches the file)") == 2


def test_an_onnx_copy_replaced_with_its_hash_updated_is_another_version(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """model.onnx swapped and its manifest hash rewritten: the files all match, but the
    version (what /version, every answer and telemetry say) is no longer the original's."""
    assert main(["lineage", str(model_dir), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)["version"]
    (model_dir / "model.onnx").write_bytes(b"another network")
    document = json.loads((model_dir / MANIFEST_FILE).read_text())
    document["model"]["info"]["onnx"]["sha256"] = sha256_file(model_dir / "model.onnx")
    (model_dir / MANIFEST_FILE).write_text(json.dumps(document))
    assert main(["lineage", str(model_dir)]) == 0
    text = capsys.readouterr().out
    version = Manifest.read(model_dir).model_version
    assert version != original and f"version   {version}" in text


def test_lineage_json_is_the_manifest_and_the_check(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lineage", str(model_dir), "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert trail["manifest"] == json.loads((model_dir / MANIFEST_FILE).read_text())
    assert trail["check"]["ok"] is True
    assert [f["role"] for f in trail["check"]["files"]] == ["model", "onnx", "reference"]
    assert trail["manifest"]["git"]["dirty_files"] == ["src/train.py"]
    assert trail["version"].startswith("train_text_baseline@")
    (model_dir / "model.onnx").write_bytes(b"x")
    assert main(["lineage", str(model_dir), "--json"]) == 2
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["ok"] is False
    assert {f["role"]: f["status"] for f in check["files"]}["onnx"] == "differs"


def test_lineage_without_a_manifest_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lineage", str(tmp_path)]) == 1
    assert "has no manifest.json" in capsys.readouterr().err


def test_lineage_goes_on_to_the_promotions(model_dir: Path, tmp_path: Path) -> None:
    from mltrail.tracking.lineage import describe, lineage

    history = tmp_path / "history.jsonl"
    version = Manifest.read(model_dir).model_version
    records = [
        {"time": 0.0, "version": version, "release": "releases/text/a",
         "registry": {"name": "mltrail-text", "version": "2"}, "reasons": {"why": "better"}},
        {"time": 1.0, "version": "other@123", "release": "releases/text/b", "reasons": {}},
    ]  # fmt: skip
    history.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert lineage(model_dir, history)["promotions"] == records[:1]
    assert describe(model_dir, history).endswith(
        "promoted  1970-01-01T00:00:00Z to releases/text/a, MLflow mltrail-text v2 (better)"
    )
