"""``/feedback`` after a restart checks the label against the classes of the model that made
the prediction (found through the store: its endpoint and model version), as it does for a
prediction still in memory: 5 on a 2-class model and 2^64 are refused, not stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.serve.conftest import start_server

GREY = [[[0.5] * 3] * 32] * 32  # one 32 x 32 RGB image


def test_labels_are_checked_against_the_models_classes_after_a_restart(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    workdir = tmp_path / "srv"
    first = start_server(workdir, model_dirs)
    with first.client() as c:
        text = c.post("/predict/text", json={"text": "good"}).json()["predictions"][0]
        image = c.post("/predict/image", json={"image": GREY}).json()["predictions"][0]
    first.stop()

    again = start_server(workdir, model_dirs)  # nothing in memory: the store is asked
    with again.client() as c:

        def feedback(prediction: dict[str, str], label: int) -> tuple[int, str]:
            body = {"prediction_id": prediction["prediction_id"], "label": label}
            r = c.post("/feedback", json=body)
            return r.status_code, r.text

        assert feedback(text, 1)[0] == 200
        status, body = feedback(text, 5)
        assert status == 422 and "label 5 is not a class index (0-1)" in body
        status, body = feedback(text, 2**64)  # jammed the store: "exceeds 64-bit range"
        assert status == 422 and "less than or equal to 2147483647" in body
        assert feedback(image, 9)[0] == 200  # the CNN has 10 classes
        status, body = feedback(image, 10)
        assert status == 422 and "(0-9)" in body
        unknown = c.post("/feedback", json={"prediction_id": "f" * 32, "label": 0})
        assert unknown.status_code == 404
        metrics = c.get("/metrics").text
    again.stop()
    assert 'mltrail_telemetry_quarantined_total{sink="sqlite"} 0.0' in metrics
    with sqlite3.connect(workdir / "telemetry.db") as conn:
        stored = conn.execute("SELECT prediction_id, label FROM feedback ORDER BY label").fetchall()
    assert stored == [(text["prediction_id"], 1), (image["prediction_id"], 9)]

    # No model of that kind loaded: the label cannot be checked, so it is refused.
    text_only = start_server(workdir, model_dirs, image_model=None)
    with text_only.client() as c:
        r = c.post("/feedback", json={"prediction_id": image["prediction_id"], "label": 3})
    text_only.stop()
    assert r.status_code == 409 and "no model of that kind is loaded" in r.text
