"""How long a stopping server waits for requests in flight: ``graceful_shutdown_s`` (uvicorn's
graceful shutdown), which a platform's grace period must cover with the telemetry drain
(deploy/k8s/base/server.yaml)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.serve.conftest import API_KEY, start_server


def test_a_request_still_in_flight_after_graceful_shutdown_s_is_cut_off(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A request whose body is still coming when SIGTERM arrives is waited for
    ``graceful_shutdown_s`` (2 s here), then cancelled: the server stops in seconds, not after
    the 60 s its body deadline would allow."""
    server = start_server(
        tmp_path, model_dirs, alias_poll_s=0, body_timeout_s=60,
        environ={"MLTRAIL_GRACEFUL_SHUTDOWN_S": "2"},
    )  # fmt: skip
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"text": "half a bo'
        )
        time.sleep(0.5)  # the request is in the app now, waiting for the rest of its body
        started = time.monotonic()
        server.stop()  # SIGTERM; asserts the application shut down (the telemetry drained)
        took = time.monotonic() - started
    assert 1.8 <= took < 15, took
    log = server.log.read_text()
    assert "timeout graceful shutdown exceeded" in log, log[-2000:]
