"""A real OpenSSH server on 127.0.0.1 (Debian's openssh-server), with its host key pinned in a
known_hosts file, for the DVC remote over SSH and the deploy."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SshHost:
    port: int
    user: str
    key: Path  # the client's private key
    host_key_line: str  # "[127.0.0.1]:<port> ssh-ed25519 AAAA..."
    home: Path  # a HOME whose .ssh/known_hosts pins the host key

    def known_hosts(self, line: str | None = None) -> None:
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "known_hosts").write_text((line or self.host_key_line) + "\n")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshHost]:
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd must start as root to log users in")
    root = tmp_path / "sshd"
    root.mkdir()
    host_pub = _keygen(root / "host_ed25519")
    client_pub = _keygen(root / "client_ed25519")
    (root / "authorized_keys").write_text(client_pub + "\n")
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation folder
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=(root / "sshd.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((root / "sshd.log").read_text())
        time.sleep(0.1)
    key_type, key_data = host_pub.split()[:2]
    pinned = f"[127.0.0.1]:{port} {key_type} {key_data}"
    host = SshHost(port, "root", root / "client_ed25519", pinned, tmp_path / "home")
    host.known_hosts()
    yield host
    proc.terminate()
    proc.wait(timeout=10)
