"""The DVC remote over SSH, as the paper's pipeline uses it: push and pull through a real sshd
with its host key pinned; a wrong host key is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.release.conftest import SshHost

pytest.importorskip("dvc_ssh")
BIN = Path(sys.executable).parent


def _run(
    args: list[str], cwd: Path, home: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HOME": str(home), "DVC_NO_ANALYTICS": "1",
                        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


def _project(tmp_path: Path, host: SshHost) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    _run(["git", "init", "-q"], project, host.home)
    _run(["dvc", "init", "-q"], project, host.home)
    (project / "data").mkdir()
    (project / "data" / "reviews.csv").write_text("text,label\ngood,1\nbad,0\n")
    (project / "data" / "blob.bin").write_bytes(os.urandom(300_000))
    _run(["dvc", "add", "data"], project, host.home)
    remote = tmp_path / "remote-store"
    _run(["dvc", "remote", "add", "-d", "team",
          f"ssh://{host.user}@127.0.0.1:{host.port}{remote}"], project, host.home)  # fmt: skip
    # The key path is per machine: kept in .dvc/config.local, never committed.
    _run(["dvc", "remote", "modify", "--local", "team", "keyfile", str(host.key)],
         project, host.home)  # fmt: skip
    return project


def test_push_and_pull_round_trip_through_sshd(ssh_host: SshHost, tmp_path: Path) -> None:
    project = _project(tmp_path, ssh_host)
    original = (project / "data" / "blob.bin").read_bytes()
    _run(["mltrail", "dvc", "push"], project, ssh_host.home)  # host key pinned and matching
    assert any((tmp_path / "remote-store").rglob("*")), "nothing reached the remote"
    _run(["rm", "-rf", "data", ".dvc/cache"], project, ssh_host.home)
    _run(["mltrail", "dvc", "pull"], project, ssh_host.home)
    assert (project / "data" / "blob.bin").read_bytes() == original
    assert "are in sync" in _run(["dvc", "status", "-c"], project,
                                                        ssh_host.home).stdout  # fmt: skip


def test_plain_dvc_accepts_any_host_key(ssh_host: SshHost, tmp_path: Path) -> None:
    """Why ``mltrail dvc`` exists: dvc-ssh connects with host key checking off."""
    project = _project(tmp_path, ssh_host)
    _impostor_key(ssh_host, tmp_path)
    assert _run(["dvc", "push"], project, ssh_host.home, check=False).returncode == 0


def _impostor_key(ssh_host: SshHost, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    key_type, key_data = (tmp_path / "other.pub").read_text().split()[:2]
    ssh_host.known_hosts(f"[127.0.0.1]:{ssh_host.port} {key_type} {key_data}")


@pytest.mark.parametrize("known_hosts", ["wrong key", "no file"])
def test_mltrail_dvc_refuses_a_wrong_or_unknown_host_key(
    ssh_host: SshHost, tmp_path: Path, known_hosts: str
) -> None:
    project = _project(tmp_path, ssh_host)
    if known_hosts == "wrong key":
        _impostor_key(ssh_host, tmp_path)
    else:
        (ssh_host.home / ".ssh" / "known_hosts").unlink()
    done = _run(["mltrail", "dvc", "push"], project, ssh_host.home, check=False)
    assert done.returncode != 0
    assert "host key" in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    assert (
        not any((tmp_path / "remote-store").rglob("*"))
        if (tmp_path / "remote-store").exists()
        else True
    )
