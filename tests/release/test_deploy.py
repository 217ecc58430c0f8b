"""`mltrail deploy` to a real sshd on 127.0.0.1, process runtime: healthy releases switch, a bad
release is rolled back while the previous one keeps answering, a wrong host key is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mltrail.release.deploy import DeployError, Release, Target, deploy
from tests.conftest import free_port
from tests.release.conftest import SshHost


def _ports() -> tuple[int, int]:
    return free_port(), free_port()


def _version(port: int) -> dict[str, object]:
    version: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5).json()
    return version


def test_deploy_switch_then_roll_back_a_bad_release(
    target: Target, text_model: Path, tmp_path: Path
) -> None:
    ports = _ports()
    first = deploy(target, Release("r1", text_model=text_model, python=sys.executable), ports, 60)
    assert first["port"] == ports[0] and first["previous"] is None
    assert _version(ports[0])["image_tag"] == "r1"  # the tag reaches /version

    second = deploy(target, Release("r2", text_model=text_model, python=sys.executable), ports, 60)
    assert second["port"] == ports[1] and second["previous"] == "r1"
    assert _version(ports[1])["image_tag"] == "r2"
    with pytest.raises(httpx.TransportError):  # the old release was stopped
        httpx.get(f"http://127.0.0.1:{ports[0]}/health", timeout=2)

    bad = tmp_path / "bad-model"
    shutil.copytree(text_model, bad)
    with (bad / "model.npz").open("ab") as f:
        f.write(b"tampered")  # the server refuses it: the health gate never passes
    with pytest.raises(DeployError, match="rolled back; r2 still serves"):
        deploy(target, Release("r3", text_model=bad, python=sys.executable), ports, 20)
    assert _version(ports[1])["image_tag"] == "r2"  # the previous version still answers
    current = json.loads((Path(target.root) / "current.json").read_text())
    assert current["tag"] == "r2"
    log = [
        json.loads(line)
        for line in (Path(target.root) / "deployments.jsonl").read_text().splitlines()
    ]
    assert [(r["tag"], r["result"]) for r in log] == [
        ("r1", "switched"),
        ("r2", "switched"),
        ("r3", "rolled back"),
    ]
    server_log = (Path(target.root) / "releases" / "r3" / "server.log").read_text()
    assert "refusing to load" in server_log


def test_a_wrong_host_key_is_refused(
    target: Target, ssh_host: SshHost, tmp_path: Path, text_model: Path
) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "o")],
                   check=True)  # fmt: skip
    key_type, key_data = (tmp_path / "o.pub").read_text().split()[:2]
    ssh_host.known_hosts(f"[127.0.0.1]:{ssh_host.port} {key_type} {key_data}")
    with pytest.raises(DeployError, match="refused"):
        deploy(target, Release("r1", text_model=text_model, python=sys.executable), _ports(), 10)
    assert not Path(target.root).exists()  # nothing was done on the host
