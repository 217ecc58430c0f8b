"""`mltrail deploy` to a real sshd on 127.0.0.1, process and docker runtimes (podman as `docker`):
healthy releases switch, a bad release is rolled back while the previous one keeps answering, a
wrong host key is refused."""

from __future__ import annotations

import json
import os
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
    assert _rolled_back_to_r2(Path(target.root))["runtime"] == "process"


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


DOCKER_WRAPPER = """#!/bin/sh
# The host's `docker`: podman behind podman-docker's script, with the tests' podman settings.
# The test sshd's PATH has no sbin, where podman's network plugins find iptables.
export CONTAINERS_CONF={conf} PATH="$PATH:/usr/sbin:/sbin"
exec {docker} "$@"
"""


def _podman_docker() -> str:
    """podman-docker's `docker` (a script that execs podman) when installed, else podman: the
    same command either way. /usr/local/bin/docker, where there is one, is Docker's own CLI."""
    script = Path("/usr/bin/docker")
    if script.is_file() and b"podman" in script.read_bytes()[:4096]:
        return str(script)
    return shutil.which("podman") or "podman"


@pytest.mark.containers
def test_docker_runtime_switch_then_roll_back_a_tampered_image(
    target: Target, ssh_host: SshHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process runtime's r1 -> r2 switch and tampered-r3 rollback, with containers: podman
    as `docker` on the host side of the real sshd, r1 sent there with `docker save | ssh
    docker load`, r2 and r3 taken from the host's store."""
    from tests.release.containers import CONTAINERS_CONF, podman, require_podman, serving_image

    require_podman()
    image = serving_image()
    repo = f"localhost/mltrail-deploy-{tmp_path.name[-12:].lower().replace('_', '-')}"
    docker = ssh_host.bin / "docker"
    docker.write_text(DOCKER_WRAPPER.format(conf=CONTAINERS_CONF, docker=_podman_docker()))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{ssh_host.bin}:{os.environ['PATH']}")  # and this side's save
    podman("tag", image, f"{repo}:r1")
    podman("tag", image, f"{repo}:r2")
    # r3: the same image, its text model tampered: the server refuses it, never turns ready.
    (tmp_path / "Containerfile").write_text(
        f"FROM {image}\nRUN printf tampered >> /app/models/text/model.npz\n"
    )
    podman("build", "-q", "-t", f"{repo}:r3", str(tmp_path))
    key = "docker-deploy-key"
    auth = {"Authorization": f"Bearer {key}"}

    def release(tag: str, ship: bool = False) -> Release:
        env = {"MLTRAIL_API_KEY": key}
        return Release(tag, runtime="docker", image=repo, env=env, ship_image=ship)

    def version(port: int) -> dict[str, object]:
        answer: dict[str, object] = httpx.get(
            f"http://127.0.0.1:{port}/version", headers=auth, timeout=5
        ).json()
        return answer

    ports = _ports()
    try:
        first = deploy(target, release("r1", ship=True), ports, 90)
        assert first["port"] == ports[0] and first["handle"] == "mltrail-r1"
        assert version(ports[0])["image_tag"] == "r1"
        body = {"texts": ["a fine film"]}
        url = f"http://127.0.0.1:{ports[0]}/predict/text"
        assert httpx.post(url, json=body, headers=auth, timeout=10).status_code == 200

        second = deploy(target, release("r2"), ports, 90)
        assert second["port"] == ports[1] and second["previous"] == "r1"
        assert version(ports[1])["image_tag"] == "r2"
        with pytest.raises(httpx.TransportError):  # the old release was stopped
            httpx.get(f"http://127.0.0.1:{ports[0]}/health", timeout=2)
        state = podman("inspect", "--format", "{{.State.Status}}", "mltrail-r1").strip()
        assert state == "exited"
        # It stopped on SIGTERM, not a kill: its telemetry was drained (its log, kept).
        r1_log = (Path(target.root) / "releases" / "r1" / "server.log").read_text()
        assert "telemetry closed" in r1_log

        with pytest.raises(DeployError, match="rolled back; r2 still serves"):
            deploy(target, release("r3"), ports, 20)
        assert version(ports[1])["image_tag"] == "r2"  # the previous version still answers
        assert _rolled_back_to_r2(Path(target.root))["runtime"] == "docker"
    finally:
        podman("rm", "-f", "-t", "0", "mltrail-r1", "mltrail-r2", "mltrail-r3", check=False)
        podman("rmi", f"{repo}:r1", f"{repo}:r2", f"{repo}:r3", check=False)


def _rolled_back_to_r2(root: Path) -> dict[str, object]:
    """After r1, r2 and a refused r3: r2 is current, the log says so, r3's log says why;
    current.json's record."""
    current: dict[str, object] = json.loads((root / "current.json").read_text())
    assert current["tag"] == "r2"
    log = [json.loads(line) for line in (root / "deployments.jsonl").read_text().splitlines()]
    assert [(r["tag"], r["result"]) for r in log] == [
        ("r1", "switched"),
        ("r2", "switched"),
        ("r3", "rolled back"),
    ]
    assert "refusing to load" in (root / "releases" / "r3" / "server.log").read_text()
    return current
