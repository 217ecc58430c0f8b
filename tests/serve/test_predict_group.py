"""``/predict/text`` with a ``group``: stored with each prediction in both telemetry stores
(what the monitor's per-group accuracy reads); a bad group is a 422 that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from mltrail.telemetry import read_window
from tests.serve.conftest import start_server


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_group_is_stored_with_its_predictions_and_a_bad_one_is_refused(
    kind: str, model_dirs: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        telemetry = {"sinks": ["postgres"], "postgres_dsn": dsn, "spill_dir": str(tmp_path)}
        store = dsn
    else:
        telemetry = {"sqlite_path": str(tmp_path / "t.db"), "spill_dir": str(tmp_path / "s")}
        store = str(tmp_path / "t.db")
    server = start_server(tmp_path / "server", model_dirs, telemetry=telemetry)
    try:
        with server.client() as c:
            grouped = c.post("/predict/text", json={"texts": ["good", "bad"], "group": "fr-CA"})
            plain = c.post("/predict/text", json={"text": "fine film"})
            bad = {
                "too long": c.post("/predict/text", json={"text": "x", "group": "g" * 65}),
                "a number": c.post("/predict/text", json={"text": "x", "group": 7}),
                "blank": c.post("/predict/text", json={"text": "x", "group": "  "}),
            }
    finally:
        server.stop()  # flushes the telemetry queue
    assert grouped.status_code == plain.status_code == 200, (grouped.text, plain.text)
    assert bad["too long"].status_code == 422 and "at most 64 characters" in bad["too long"].text
    assert bad["a number"].status_code == 422 and "valid string" in bad["a number"].text
    assert bad["blank"].status_code == 422 and "group is blank" in bad["blank"].text
    assert all('"group"' in r.text for r in bad.values())  # the field is named
    ids = [p["prediction_id"] for p in grouped.json()["predictions"]]
    other = plain.json()["predictions"][0]["prediction_id"]
    stored = {p.prediction_id: p.group_name for p in read_window(store).predictions}
    assert stored == {ids[0]: "fr-CA", ids[1]: "fr-CA", other: None}


def test_an_image_group_comes_in_each_encoding_and_a_bad_one_is_refused(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """JSON's `group`, the form field `group`, the query's `?group=` for a raw upload: each
    stored with its predictions, each checked as the text endpoint checks it."""
    import io

    import numpy as np
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 120, dtype=np.uint8)).save(png, format="PNG")
    pixels = np.full((32, 32, 3), 0.4).tolist()
    store = tmp_path / "t.db"
    telemetry = {"sqlite_path": str(store), "spill_dir": str(tmp_path / "s")}
    server = start_server(tmp_path / "server", model_dirs, telemetry=telemetry)
    try:
        with server.client() as c:
            sent = {
                "json": c.post("/predict/image", json={"image": pixels, "group": "north"}),
                "form": c.post(
                    "/predict/image",
                    files=[("file", ("a.png", png.getvalue(), "image/png"))] * 2,
                    data={"group": "south"},
                ),
                "raw": c.post(
                    "/predict/image?group=east",
                    content=png.getvalue(),
                    headers={"content-type": "image/png"},
                ),
                "none": c.post("/predict/image", json={"image": pixels}),
            }
            bad = {
                "blank json": c.post("/predict/image", json={"image": pixels, "group": " "}),
                "long form": c.post(
                    "/predict/image",
                    files=[("file", ("a.png", png.getvalue(), "image/png"))],
                    data={"group": "g" * 65},
                ),
                "query with json": c.post("/predict/image?group=x", json={"image": pixels}),
            }
    finally:
        server.stop()
    assert all(r.status_code == 200 for r in sent.values()), {k: r.text for k, r in sent.items()}
    assert bad["blank json"].status_code == 422 and "group is blank" in bad["blank json"].text
    long = bad["long form"]
    assert long.status_code == 422 and "at most 64 characters" in long.text
    assert '"form"' in long.text and '"group"' in long.text  # where the bad value was
    query = bad["query with json"]
    assert query.status_code == 422 and "the body's `group`" in query.text
    want = {"json": "north", "form": "south", "raw": "east", "none": None}
    expected = {
        p["prediction_id"]: want[how] for how, r in sent.items() for p in r.json()["predictions"]
    }
    assert len(expected) == 5  # the form sent two images
    stored = {p.prediction_id: p.group_name for p in read_window(str(store)).predictions}
    assert stored == expected
