"""The request edge refuses what no store can write: a lone surrogate in any text field
(``"bad \\ud800 movie"`` is valid JSON, not valid Unicode) is a 422 that names the input, so
that with input capture on it never reaches telemetry, where it jammed the SQLite sink."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.serve.conftest import start_server

BAD = b'"bad \\ud800 movie"'  # the JSON escape, as a client sends it


def _post(client: object, path: str, body: bytes) -> tuple[int, str]:
    import httpx

    assert isinstance(client, httpx.Client)
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    return r.status_code, r.text


def test_a_lone_surrogate_is_refused_at_the_edge_naming_the_input(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(tmp_path / "srv", model_dirs, capture_inputs=1.0)
    with server.client() as c:
        text = _post(c, "/predict/text", b'{"text": ' + BAD + b"}")
        texts = _post(c, "/predict/text", b'{"texts": ["fine", ' + BAD + b"]}")
        feedback = _post(c, "/feedback", b'{"prediction_id": ' + BAD + b', "label": 1}')
        for i in range(24):  # the traffic around it, all of it stored
            assert c.post("/predict/text", json={"text": f"a good movie {i}"}).status_code == 200
    server.stop()
    for status, body in (text, texts):
        assert status == 422 and "lone surrogate" in body, (status, body)
    assert feedback[0] == 422 and "unicode" in feedback[1]  # pydantic's own check (max_length)
    assert '"loc":["body","text"]' in text[1] and "at character 4" in text[1]
    assert '"loc":["body","texts",1]' in texts[1]
    assert '"loc":["body","prediction_id"]' in feedback[1]
    with sqlite3.connect(tmp_path / "srv" / "telemetry.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone() == (24,)
        assert conn.execute("SELECT COUNT(*) FROM inputs").fetchone() == (24,)
