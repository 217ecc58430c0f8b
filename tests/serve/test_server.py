"""The server as a real process on 127.0.0.1: every endpoint, auth, limits, telemetry, reload."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from mltrail.contracts.manifest import Manifest
from mltrail.models.loading import load
from tests.serve.conftest import Server, start_server

TEXTS = ["a good film number 3", "a bad film number 8", "review of class 1", "good good good"]


def _offline(model_dir: Path, kind: str, inputs: object) -> np.ndarray:
    return load(str(model_dir), kind).predict_proba(inputs)


def _images(model_dirs: dict[str, Path], n: int = 4) -> np.ndarray:
    with np.load(model_dirs["image_data"] / "test.npz") as z:
        images: np.ndarray = z["x"][:n]  # N x 3 x 32 x 32 in [0, 1]
    return images


def test_health_and_ready_are_open_and_version_needs_the_key(
    server: Server, model_dirs: dict[str, Path]
) -> None:
    with server.client(key=None) as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready").json()
        assert ready["ready"] is True and set(ready["models"]) == {"text", "image"}
        assert set(ready) == {"ready", "models"}  # no source, no manifest: those need the key
        assert c.get("/version").status_code == 401
    with server.client() as c:
        version = c.get("/version").json()
    assert version["image_tag"] == "mltrail:test"
    manifest = json.loads((model_dirs["text"] / "manifest.json").read_text())
    assert version["models"]["text"]["manifest"] == manifest
    assert version["models"]["text"]["version"] == Manifest.from_json(manifest).model_version


def test_text_predictions_match_the_offline_model(
    server: Server, model_dirs: dict[str, Path]
) -> None:
    expected = _offline(model_dirs["text"], "text", TEXTS)
    with server.client() as c:
        batch = c.post("/predict/text", json={"texts": TEXTS, "probabilities": True}).json()
        one = c.post("/predict/text", json={"text": TEXTS[1]}).json()
    labels = [p["label"] for p in batch["predictions"]]
    assert labels == expected.argmax(axis=1).tolist()
    for p, row in zip(batch["predictions"], expected, strict=True):
        assert p["confidence"] == pytest.approx(row.max())
        assert list(p["probabilities"].values()) == pytest.approx(row.tolist())
        assert p["class_name"] == ["neg", "pos"][p["label"]] and len(p["prediction_id"]) == 32
    assert (
        one["predictions"][0]["label"] == labels[1]
        and one["predictions"][0]["probabilities"] is None
    )
    assert batch["inference_ms"] > 0 and "@" in batch["model_version"]


def test_explain_returns_the_terms_that_drove_each_text_prediction(server: Server) -> None:
    with server.client() as c:
        body = c.post("/predict/text", json={"texts": ["a good film", "a bad film"],
                                             "explain": True}).json()  # fmt: skip
        plain = c.post("/predict/text", json={"text": "a good film"}).json()
    good, bad = body["predictions"]
    assert good["class_name"] == "pos" and good["explanation"][0]["term"] == "good"
    assert bad["class_name"] == "neg" and bad["explanation"][0]["term"] == "bad"
    assert all(t["weight"] > 0 for t in good["explanation"][:1])
    assert plain["predictions"][0]["explanation"] is None


def test_image_predictions_match_the_offline_model_in_every_encoding(
    server: Server, model_dirs: dict[str, Path]
) -> None:
    x = _images(model_dirs)
    expected = _offline(model_dirs["image"], "image", x).argmax(axis=1).tolist()
    hwc = x.transpose(0, 2, 3, 1)
    with server.client() as c:
        as_json = c.post("/predict/image", json={"images": hwc.tolist()}).json()
        as_255 = c.post("/predict/image", json={"images": (hwc * 255).tolist()}).json()
        pngs = []
        for image in hwc:
            buffer = io.BytesIO()
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        upload = c.post("/predict/image", files=[("file", (f"{i}.png", b, "image/png"))
                                                 for i, b in enumerate(pngs)]).json()  # fmt: skip
        raw = c.post("/predict/image", content=pngs[0],
                     headers={"Content-Type": "image/png"}).json()  # fmt: skip
    assert [p["label"] for p in as_json["predictions"]] == expected
    assert [p["label"] for p in as_255["predictions"]] == expected
    # PNG stores 8-bit pixels: the same as the 0-255 JSON, which the model saw rounded too.
    assert [p["label"] for p in upload["predictions"]] == [
        p["label"] for p in as_255["predictions"]
    ]
    assert raw["predictions"][0]["label"] == upload["predictions"][0]["label"]


def test_predict_and_feedback_need_the_api_key(server: Server) -> None:
    for key in (None, "wrong"):
        with server.client(key=key) as c:
            r = c.post("/predict/text", json={"text": "fine"})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert c.post("/feedback", json={"prediction_id": "x", "label": 0}).status_code == 401
            assert c.post("/admin/reload", json={"text_model": "x"}).status_code == 401
            assert c.get("/version").status_code == 401
            assert c.get("/metrics").status_code == 200


@pytest.mark.parametrize(("request_kw", "status", "message"), [
    ({"json": {"text": ""}}, 422, "text is empty"),
    ({"json": {"text": "   "}}, 422, "text is empty"),
    ({"json": {"texts": ["ok", ""]}}, 422, "positions [1] are empty"),
    ({"json": {}}, 422, "exactly one of"),
    ({"json": {"text": "x" * 1_000_000}}, 413, "over the limit"),
    ({"json": {"text": "x" * 100_001}}, 422, "over 100000 characters"),
    ({"json": {"texts": ["ok"] * 300}}, 413, "batch of 300"),
    ({"content": b"not json", "headers": {"Content-Type": "application/json"}}, 422, "json"),
    ({"json": {"text": "fine", "extra": 1}}, 422, "extra"),
])  # fmt: skip
def test_bad_text_requests_get_4xx_with_a_message(
    server: Server, request_kw: dict[str, object], status: int, message: str
) -> None:
    with server.client() as c:
        r = c.post("/predict/text", **request_kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert message.lower() in r.text.lower()


def test_bad_image_requests_get_4xx_with_a_message(server: Server) -> None:
    big = io.BytesIO()
    Image.new("RGB", (64, 64)).save(big, format="PNG")
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    cases = [
        ({"content": b"\x89PNG not really", "headers": {"Content-Type": "image/png"}}, 422,
         "not a readable"),
        ({"files": [("file", ("a.png", b"garbage bytes", "image/png"))]}, 422, "not a readable"),
        ({"content": big.getvalue(), "headers": {"Content-Type": "image/png"}}, 422, "32 x 32"),
        ({"files": [("file", ("a.gif", gif.getvalue(), "image/gif"))]}, 422, "png or jpeg"),
        ({"json": {"image": [[[0.5] * 3] * 16] * 32}}, 422, "32 x 32 x 3"),
        ({"json": {"image": [[[0.5] * 3, [0.5] * 2]] * 32}}, 422, "ragged"),
        ({"content": b"\x00", "headers": {"Content-Type": "application/json"}}, 422, "json"),
        ({"json": {"image": [[[300.0] * 3] * 32] * 32}}, 422, "less than or equal"),
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "not accepted"),
        ({"files": [("other", ("a.png", b"x", "image/png"))]}, 422, "field `file`"),
    ]  # fmt: skip
    with server.client() as c:
        for kw, status, message in cases:
            r = c.post("/predict/image", **kw)  # type: ignore[arg-type]
            assert r.status_code == status, (kw, r.text)
            assert message.lower() in r.text.lower(), r.text


def test_feedback_for_known_and_unknown_predictions(server: Server) -> None:
    with server.client() as c:
        pid = c.post("/predict/text", json={"text": "good"}).json()["predictions"][0]
        ok = c.post("/feedback", json={"prediction_id": pid["prediction_id"], "label": 1})
        unknown = c.post("/feedback", json={"prediction_id": "f" * 32, "label": 1})
        bad_label = c.post("/feedback", json={"prediction_id": pid["prediction_id"], "label": 9})
    assert ok.status_code == 200 and ok.json()["accepted"] is True
    assert unknown.status_code == 404 and "no prediction with id" in unknown.text
    assert bad_label.status_code == 422 and "not a class index" in bad_label.text


def test_metrics_count_requests_predictions_and_telemetry(server: Server) -> None:
    with server.client() as c:
        c.post("/predict/text", json={"texts": TEXTS})
        c.post("/predict/text", json={"text": ""})
        body = c.get("/metrics").text
    assert re.search(r'mltrail_requests_total\{endpoint="/predict/text",status="200"\} \d', body)
    assert re.search(r'mltrail_requests_total\{endpoint="/predict/text",status="422"\} \d', body)
    assert 'mltrail_request_seconds_bucket{endpoint="/predict/text"' in body
    assert re.search(r'mltrail_predictions_total\{class_name="(neg|pos)",model="text"\} \d', body)
    assert "mltrail_prediction_confidence_bucket" in body
    assert "mltrail_telemetry_queue_depth" in body
    assert 'mltrail_telemetry_exported_total{sink="sqlite"}' in body
    assert "mltrail_telemetry_dropped_total 0.0" in body


def test_hot_reload_under_traffic_drops_nothing(
    server: Server, model_dirs: dict[str, Path]
) -> None:
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def traffic() -> None:
        with server.client() as c:
            while not stop.is_set():
                r = c.post("/predict/text", json={"texts": TEXTS})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["model_version"])

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with server.client() as c:
        before = c.get("/ready").json()["models"]["text"]
        swapped = c.post("/admin/reload", json={"text_model": str(model_dirs["text2"])})
        time.sleep(0.5)
        tampered = model_dirs["text2"].parent / "tampered"
        if not tampered.exists():
            import shutil

            shutil.copytree(model_dirs["text2"], tampered)
            with (tampered / "model.npz").open("ab") as f:
                f.write(b"\0")
        refused = c.post("/admin/reload", json={"text_model": str(tampered)})
        after = c.get("/ready").json()["models"]["text"]
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        back = c.post("/admin/reload", json={"text_model": str(model_dirs["text"])})
    assert swapped.status_code == 200 and swapped.json()["reloaded"]["text"] != before
    assert (
        refused.status_code == 409 and "sha256" in refused.text and "still serving" in refused.text
    )
    assert after == swapped.json()["reloaded"]["text"]  # the failed reload kept it serving
    assert failures == [] and before in versions and after in versions
    assert back.status_code == 200 and back.json()["reloaded"]["text"] == before


def test_a_pointer_file_change_reloads(server: Server, model_dirs: dict[str, Path]) -> None:
    pointer = server.workdir / "pointer.json"
    with server.client() as c:
        before = c.get("/ready").json()["models"]["text"]
        pointer.write_text(json.dumps({"text": str(model_dirs["text2"])}))
        deadline = time.monotonic() + 15
        while c.get("/ready").json()["models"]["text"] == before:
            assert time.monotonic() < deadline, "the pointer file was not picked up"
            time.sleep(0.2)
        c.post("/admin/reload", json={"text_model": str(model_dirs["text"])})


def test_a_server_without_configured_models_serves_the_pointers(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "pointer.json").write_text(json.dumps({"text": str(model_dirs["text2"])}))
    server = start_server(tmp_path, model_dirs, text_model=None, image_model=None)
    try:
        with server.client() as c:
            ready = c.get("/ready").json()
            version = c.get("/version").json()["models"]["text"]
        assert ready["ready"] is True and set(ready["models"]) == {"text"}
        assert version["source"] == str(model_dirs["text2"])
    finally:
        server.stop()


def test_sigterm_under_load_completes_requests_and_stores_every_record(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(tmp_path / "srv", model_dirs)
    ok = 0
    errors: list[str] = []
    lock = threading.Lock()

    def traffic() -> None:
        nonlocal ok
        with server.client() as c:
            while True:
                try:
                    r = c.post("/predict/text", json={"texts": TEXTS[:2]})
                except httpx.TransportError:
                    return  # the server stopped accepting: expected after SIGTERM
                if r.status_code == 200:
                    with lock:
                        ok += len(r.json()["predictions"])
                else:
                    errors.append(r.text)

    threads = [threading.Thread(target=traffic) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    assert server.stop() in (0, -signal.SIGTERM)
    for t in threads:
        t.join()
    assert errors == [] and ok > 50
    with sqlite3.connect(tmp_path / "srv" / "telemetry.db") as conn:
        stored = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        profile = json.loads(conn.execute("SELECT profile FROM predictions").fetchone()[0])
    assert stored == ok
    with sqlite3.connect(tmp_path / "srv" / "telemetry.db") as conn:  # capture is off
        assert conn.execute("SELECT COUNT(*) FROM inputs").fetchone() == (0,)
    # The input statistics, and the TF-IDF vector projected on the reference's directions.
    assert set(profile) == {"chars", "tokens", "oov_rate", "proj_0", "proj_1", "proj_2", "proj_3"}
    log = server.log.read_text()
    assert "test-key-123" not in log and TEXTS[0] not in log  # no secrets, no raw inputs


def test_sustained_load_at_64_connections_then_sigterm_loses_nothing(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """$MLTRAIL_LOAD_TEST_S seconds (60 by default) of load at 64 connections: no 5xx, and
    exactly one telemetry record per answered prediction; SIGTERM while requests are in flight
    completes them and loses no queued record."""
    seconds = float(os.environ.get("MLTRAIL_LOAD_TEST_S", "60"))
    server = start_server(tmp_path / "srv", model_dirs)
    counts = {"ok": 0, "5xx": 0, "other": 0}

    async def worker(client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            try:
                r = await client.post("/predict/text", json={"text": TEXTS[0]})
            except httpx.TransportError:
                return  # stopped accepting after SIGTERM
            key = "ok" if r.status_code == 200 else "5xx" if r.status_code >= 500 else "other"
            counts[key] += 1

    async def run(duration: float, then_stop: bool) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        headers = {"Authorization": "Bearer test-key-123"}
        async with httpx.AsyncClient(base_url=server.url, limits=limits, headers=headers,
                                     timeout=60) as client:  # fmt: skip
            until = time.monotonic() + duration
            tasks = [asyncio.create_task(worker(client, until)) for _ in range(64)]
            if then_stop:
                await asyncio.sleep(duration / 2)
                server.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*tasks)

    asyncio.run(run(seconds, then_stop=False))
    sustained = dict(counts)
    asyncio.run(run(4.0, then_stop=True))  # SIGTERM in the middle of this burst
    assert server.wait() in (0, -signal.SIGTERM)
    assert sustained["5xx"] == 0 and counts["5xx"] == 0 and counts["other"] == 0
    assert sustained["ok"] > 64
    with sqlite3.connect(tmp_path / "srv" / "telemetry.db") as conn:
        stored = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert stored == counts["ok"]


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    """Generated requests from the server's own OpenAPI (examples, coverage, fuzzing,
    stateful): every answer is below 500."""
    st = Path(sys.executable).parent / "st"
    done = subprocess.run(
        [str(st), "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
         "--header", "Authorization: Bearer test-key-123", "--max-examples", "30",
         "--seed", "1", "--request-timeout", "30"],
        capture_output=True, text=True, timeout=600, cwd=server.workdir,  # its cache there
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\d+ generated, \d+ passed", done.stdout), done.stdout[-2000:]
    assert "Unresolvable references" not in done.stdout
