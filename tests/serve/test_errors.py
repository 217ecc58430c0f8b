"""Clean errors: a model that cannot be loaded is a 409 with a message (the old model keeps
serving), a hostile image a 422, never a 500 or a traceback; the pointer watcher outlives any
bad pointer; MLflow downloads leave no temp folder."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mltrail.models.loading import ModelLoadError, load
from tests.serve.conftest import Server, start_server


@pytest.fixture(scope="module")
def torch_server(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose CNN runs under torch: the path that reads a pickle-based format."""
    running = start_server(tmp_path_factory.mktemp("errors"), model_dirs,
                           environ={"MLTRAIL_CNN_RUNTIME": "torch"})  # fmt: skip
    yield running
    running.stop()


def _rehash(model_dir: Path, new_bytes: bytes) -> None:
    """Replace the model file and make the manifest agree: a file that passes the hash check
    but is not what a reader expects."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (model_dir / manifest["model"]["file"]).write_bytes(new_bytes)
    manifest["model"]["sha256"] = hashlib.sha256(new_bytes).hexdigest()
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


class _RunsCode:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _bad_models(model_dirs: dict[str, Path], root: Path) -> dict[str, tuple[str, str]]:
    """name -> (kind, source) of a model that cannot be loaded."""
    truncated = shutil.copytree(model_dirs["text"], root / "truncated")
    npz = (truncated / "model.npz").read_bytes()
    _rehash(truncated, npz[: len(npz) // 2])
    corrupt = shutil.copytree(model_dirs["text"], root / "corrupt")
    _rehash(corrupt, npz[:100] + b"\x00" * 1000 + npz[1100:])  # the zip's entries, garbled
    text_pickle = shutil.copytree(model_dirs["text"], root / "text-pickle")
    _rehash(text_pickle, pickle.dumps(_RunsCode(root / "ran")))
    cnn_pickle = shutil.copytree(model_dirs["image"], root / "cnn-pickle")
    _rehash(cnn_pickle, pickle.dumps(_RunsCode(root / "ran")))
    return {
        "a file, not a folder": ("text", "/etc/passwd"),
        "a NUL byte": ("text", f"{model_dirs['text']}\x00/x"),
        "a truncated npz": ("text", str(truncated)),
        "a garbled npz": ("text", str(corrupt)),
        "a pickle for the text model": ("text", str(text_pickle)),
        "a pickle for the CNN (torch)": ("image", str(cnn_pickle)),
    }


def test_a_model_that_cannot_be_loaded_is_a_409_and_the_old_one_serves(
    torch_server: Server, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    bad = _bad_models(model_dirs, tmp_path)
    with torch_server.client() as c:
        before = c.get("/ready").json()["models"]
        for name, (kind, source) in bad.items():
            r = c.post("/admin/reload", json={f"{kind}_model": source})
            assert r.status_code == 409, (name, r.status_code, r.text)
            detail = r.json()["detail"]
            assert detail.startswith("reload failed, still serving the old model: "), name
            assert "Traceback" not in detail, name
        assert c.get("/ready").json()["models"] == before
        assert c.post("/predict/text", json={"text": "still fine"}).status_code == 200
    assert not (tmp_path / "ran").exists()  # no pickle was run


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, extra: bytes = b"", rows: bytes | None = None) -> bytes:
    """A PNG (8-bit RGB) built by hand: it may claim any size and hold any chunk."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = rows if rows is not None else (b"\x00" + b"\x80" * 3 * width) * height
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra
            + _chunk(b"IDAT", zlib.compress(pixels, 9)) + _chunk(b"IEND", b""))  # fmt: skip


def test_decompression_bombs_and_unsupported_images_are_422(torch_server: Server) -> None:
    inflates = zlib.compress(b"\x00" * 50_000_000, 9)  # 49 kB that inflate to 50 MB
    cases = {
        "50000 x 50000 in 68 bytes": _png(50_000, 50_000, rows=b"\x00" * 10),
        "10000 x 10000 (over Pillow's warning size)": _png(10_000, 10_000, rows=b"\x00" * 10),
        "a zTXt bomb": _png(32, 32, _chunk(b"zTXt", b"Comment\x00\x00" + inflates)),
        "an iCCP bomb": _png(32, 32, _chunk(b"iCCP", b"icc\x00\x00" + inflates)),
        "a BMP": _bmp(),
        "a truncated PNG": _png(32, 32)[:60],
    }
    with torch_server.client() as c:
        good = c.post("/predict/image", content=_png(32, 32),
                      headers={"Content-Type": "image/png"})  # fmt: skip
        assert good.status_code == 200, good.text
        for name, blob in cases.items():
            for kw in ({"content": blob, "headers": {"Content-Type": "image/png"}},
                       {"files": [("file", ("x.png", blob, "image/png"))]}):  # fmt: skip
                r = c.post("/predict/image", **kw)
                assert r.status_code == 422, (name, r.status_code, r.text)
                assert "Traceback" not in r.text


def _bmp() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, format="BMP")
    return out.getvalue()


def test_an_image_is_scaled_alone_not_with_its_batch(
    torch_server: Server, model_dirs: dict[str, Path]
) -> None:
    """[0, 1] and [0, 255] images in one batch: each gets the class it gets alone."""
    with np.load(model_dirs["image_data"] / "test.npz") as z:
        images = z["x"][:8].transpose(0, 2, 3, 1)  # N x 32 x 32 x 3 in [0, 1]
    unit = [img.tolist() for img in images[:4]]
    scaled = [(img * 255).tolist() for img in images[4:]]
    with torch_server.client() as c:

        def labels(batch: list[Any]) -> list[int]:
            r = c.post("/predict/image", json={"images": batch, "probabilities": True})
            assert r.status_code == 200, r.text
            return [p["label"] for p in r.json()["predictions"]]

        alone = labels(unit) + labels(scaled)
        mixed = labels(unit + scaled)
        probabilities = c.post("/predict/image", json={"images": unit[:1] + scaled[:1],
                                                       "probabilities": True}).json()  # fmt: skip
        single = c.post("/predict/image", json={"image": unit[0], "probabilities": True}).json()
    assert mixed == alone
    assert probabilities["predictions"][0]["probabilities"] == pytest.approx(
        single["predictions"][0]["probabilities"], abs=1e-5
    )


def test_the_pointer_watcher_survives_a_bad_pointer_and_logs_it_once(
    torch_server: Server, model_dirs: dict[str, Path]
) -> None:
    pointer = torch_server.workdir / "pointer.json"
    with torch_server.client() as c:
        before = c.get("/ready").json()["models"]["text"]
        for bad, problem in (("/etc/passwd", "/etc/passwd cannot be loaded"),
                             ("/nowhere\x00", "holds a NUL byte")):  # fmt: skip
            pointer.write_text(json.dumps({"text": bad}))
            _wait_for_log(torch_server, f"pointer file {pointer}", problem)
        time.sleep(2.5)  # the watcher polls every second: a problem it saw is not logged again
        lines = torch_server.log.read_text().splitlines()
        logged = [line for line in lines if f"pointer file {pointer}" in line]
        assert len(logged) == 2, logged
        assert c.get("/ready").json()["models"]["text"] == before  # the old model serves
        pointer.write_text(json.dumps({"text": str(model_dirs["text2"])}))
        deadline = time.monotonic() + 15
        while c.get("/ready").json()["models"]["text"] == before:
            assert time.monotonic() < deadline, "the watcher did not apply a valid pointer"
            time.sleep(0.2)
        c.post("/admin/reload", json={"text_model": str(model_dirs["text"])})


def _wait_for_log(server: Server, *parts: str) -> None:
    deadline = time.monotonic() + 15
    while not any(all(p in line for p in parts) for line in server.log.read_text().splitlines()):
        assert time.monotonic() < deadline, (parts, server.log.read_text()[-3000:])
        time.sleep(0.2)


def test_an_mlflow_model_leaves_no_temp_folder_loaded_or_not(
    text_data: Path,
    make_params: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mltrail.stages.train_text as train_text
    from mltrail.tracking.journal import read_state

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    params = make_params(f"tracking.mlflow_uri={uri}", "tracking.wait=true")
    manifest = train_text.run(params, "mlflow", text_data, workdir / "model")
    state = read_state(Path(str(manifest.tracking.journal)), "mlflow")
    assert state is not None
    source = f"runs:/{state['run_id']}/mltrail-model"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    temp = workdir / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    for _ in range(3):
        assert load(source, "text").manifest == manifest
    with pytest.raises(ModelLoadError, match="not an image model"):
        load(source, "image")  # downloaded, then refused
    with pytest.raises(ModelLoadError, match="cannot fetch"):
        load(f"runs:/{state['run_id']}/nothing-here", "text")
    assert [p.name for p in temp.iterdir()] == []
