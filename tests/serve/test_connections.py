"""Bounded connections, tried with raw sockets against a real ``mltrail serve``: an idle socket
is closed, slow headers and slow bodies are cut (408), oversized headers refused (431), and
connections beyond the limit get 503; a well-behaved client is served as before."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.serve.conftest import API_KEY, Server, start_server

MAX_CONNECTIONS = 8
PATIENCE_S = 6.0  # how long a test waits for the server to act before calling it a failure


@pytest.fixture(scope="module")
def bounded(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("bounded"), model_dirs,
                           header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_s=1,
                           max_header_bytes=16_384, max_connections=MAX_CONNECTIONS)  # fmt: skip
    yield running
    running.stop()


def _connect(server: Server) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((str(url.hostname), int(url.port or 80)), timeout=PATIENCE_S)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a timeout fails (it kept the socket)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open; it sent {received[:200]!r}")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _post_head(length: int) -> bytes:
    return (
        f"POST /predict/text HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _trickle(sock: socket.socket, parts: list[bytes], every_s: float = 0.25) -> None:
    """Send ``parts`` slowly, stopping when the server has closed the connection."""
    for part in parts:
        try:
            sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(every_s)


def test_an_idle_socket_is_closed(bounded: Server) -> None:
    with _connect(bounded) as sock:
        started = time.monotonic()
        assert _read_until_closed(sock) == b""  # nothing to answer: closed quietly
    assert 0.9 <= time.monotonic() - started < 4


def test_an_idle_keep_alive_connection_is_closed_after_its_response(bounded: Server) -> None:
    with _connect(bounded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"status":"ok"}')
    assert time.monotonic() - started < 4


def test_slow_headers_are_cut_with_408(bounded: Server) -> None:
    with _connect(bounded) as sock:
        started = time.monotonic()
        _trickle(sock, [b"GET /health HTTP/1.1\r\nHost: x\r\n", *[b"X-Slow: 1\r\n"] * 40])
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert b"request headers not received within 1.0 s" in received
    assert time.monotonic() - started < 4 + 40 * 0.25  # cut at 1 s, not after the 40 lines


def test_a_slow_body_is_cut_with_408(bounded: Server) -> None:
    body = b'{"text": "' + b"a" * 80 + b'"}'
    head = _post_head(len(body))
    with _connect(bounded) as sock:
        sock.sendall(head)
        started = time.monotonic()
        _trickle(sock, [body[i : i + 2] for i in range(0, len(body), 2)])
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert b"request body not received within 1.0 s" in received
    assert time.monotonic() - started < 4 + len(body) / 2 * 0.25


@pytest.mark.parametrize("size", [20_000, 50_000_000])
def test_oversized_headers_get_431_and_are_not_read_on(bounded: Server, size: int) -> None:
    with _connect(bounded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < size:  # the server closes long before 50 MB
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 431"), received[:200]
    assert b"request headers over 16384 bytes" in received
    assert sent < 4_000_000  # refused early, not after reading it all


def test_connections_beyond_the_limit_get_503(bounded: Server) -> None:
    idle = [_connect(bounded) for _ in range(MAX_CONNECTIONS)]
    try:
        with _connect(bounded) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()


def test_a_well_behaved_client_is_served_as_before(bounded: Server) -> None:
    """Keep-alive, a body, pipelining: the limits do not get in the way."""
    body = b'{"text": "a good film"}'
    request = _post_head(len(body))
    with _connect(bounded) as sock:
        sock.sendall(request + body + request + body)  # two pipelined requests
        received = _read_until_closed(sock)  # then idle: closed after keep_alive_s
    assert received.count(b"HTTP/1.1 200") == 2, received
    with bounded.client() as c:
        assert c.post("/predict/text", json={"text": "x" * 50_000}).status_code == 200
