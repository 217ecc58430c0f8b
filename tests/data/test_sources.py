from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from mltrail.config import DataSource, MirrorFile
from mltrail.data.sources import fetch
from mltrail.errors import DataError

PAYLOAD = b"text,label\nhello,1\nbye,0\n" * 100
SHA = hashlib.sha256(PAYLOAD).hexdigest()
OTHER_SHA = "0" * 64


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    lie_about_length: ClassVar[bool] = False

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        length = len(data) + (1000 if self.lie_about_length else 0)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    """A real HTTP server on 127.0.0.1 serving ``handler.files``."""
    handler = type("Handler", (_Handler,), {"files": {"/data.csv": PAYLOAD}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}/data.csv"


def test_download_verifies_and_is_reused(
    server: tuple[str, type[_Handler]], tmp_path: Path
) -> None:
    base, handler = server
    source = DataSource(url=f"{base}/data.csv", sha256=SHA)
    got = fetch(source, tmp_path, mirror_dir=None, progress=False)
    assert got.origin == "download" and got.verified
    assert got.path == tmp_path / "data.csv" and got.path.read_bytes() == PAYLOAD
    handler.files = {}  # the server no longer has it: the verified copy is used
    again = fetch(source, tmp_path, mirror_dir=None, progress=False)
    assert again.origin == "cache" and again.sha256 == SHA


def test_download_with_wrong_checksum_leaves_nothing(
    server: tuple[str, type[_Handler]], tmp_path: Path
) -> None:
    base, _ = server
    source = DataSource(url=f"{base}/data.csv", sha256=OTHER_SHA)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        fetch(source, tmp_path, mirror_dir=None, progress=False)
    assert SHA in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_cut_short_leaves_nothing(
    server: tuple[str, type[_Handler]], tmp_path: Path
) -> None:
    base, handler = server
    handler.lie_about_length = True  # the body ends before Content-Length bytes
    with pytest.raises(DataError):
        fetch(
            DataSource(url=f"{base}/data.csv", sha256=SHA),
            tmp_path,
            None,
            timeout_s=5,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_unreachable_url_says_how_to_use_a_local_copy(tmp_path: Path) -> None:
    source = DataSource(
        url=_closed_port_url(), sha256=SHA, mirror=(MirrorFile(file="alt.csv.gz", sha256=SHA),)
    )
    with pytest.raises(DataError) as info:
        fetch(source, tmp_path, mirror_dir=None, timeout_s=5, progress=False)
    message = str(info.value)
    assert "could not download" in message
    assert "MLTRAIL_DATA_MIRROR" in message and "alt.csv.gz" in message and "data.csv" in message
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DataError, match="404"):
        fetch(DataSource(url=f"{base}/missing.csv"), tmp_path, None, progress=False)


def test_mirror_alternate_is_used_with_its_own_checksum(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "packed.csv").write_bytes(PAYLOAD)
    source = DataSource(
        url=_closed_port_url(),
        sha256=OTHER_SHA,
        mirror=(MirrorFile(file="packed.csv", sha256=SHA),),
    )
    got = fetch(source, tmp_path / "dl", mirror_dir=mirror, progress=False)
    assert (got.path, got.origin, got.verified) == (mirror / "packed.csv", "mirror", True)
    assert not (tmp_path / "dl").exists()  # nothing copied or downloaded


def test_mirror_file_named_like_the_url_accepts_any_listed_checksum(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(PAYLOAD)
    official_only = DataSource(url="http://example.invalid/data.csv", sha256=OTHER_SHA)
    with pytest.raises(DataError, match="checksum mismatch for the mirror file"):
        fetch(official_only, tmp_path / "dl", mirror_dir=tmp_path, progress=False)
    rebuilt_too = official_only.model_copy(
        update={"mirror": (MirrorFile(file="data.csv", sha256=SHA),)}
    )
    assert fetch(rebuilt_too, tmp_path / "dl", tmp_path, progress=False).origin == "mirror"


def test_mirror_without_the_file_falls_back_to_the_url(
    server: tuple[str, type[_Handler]], tmp_path: Path
) -> None:
    base, _ = server
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    got = fetch(
        DataSource(url=f"{base}/data.csv", sha256=SHA),
        tmp_path / "dl",
        empty_mirror,
        progress=False,
    )
    assert got.origin == "download"


def test_mirror_that_is_not_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        fetch(DataSource(url="http://x.invalid/a.csv"), tmp_path, tmp_path / "nope", progress=False)


def test_local_path_is_used_as_is_or_verified(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_bytes(PAYLOAD)
    got = fetch(DataSource(path=str(path)), tmp_path, mirror_dir=None, progress=False)
    assert (got.origin, got.verified, got.sha256) == ("path", False, SHA)
    verified = DataSource(path=str(path), path_sha256=SHA)
    assert fetch(verified, tmp_path, None, progress=False).verified
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(DataSource(path=str(path), path_sha256=OTHER_SHA), tmp_path, None, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        fetch(DataSource(path=str(tmp_path / "nope.csv")), tmp_path, None, progress=False)
