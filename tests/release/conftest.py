"""A real OpenSSH server on 127.0.0.1 (Debian's openssh-server), with its host key pinned in a
known_hosts file, for the DVC remote over SSH and the deploy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mltrail.release.deploy import Target
from tests.conftest import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SshHost:
    port: int
    user: str
    key: Path  # the client's private key
    host_key_line: str  # "[127.0.0.1]:<port> ssh-ed25519 AAAA..."
    home: Path  # a HOME whose .ssh/known_hosts pins the host key
    bin: Path  # first on the PATH of every SSH session: a test puts stand-in commands here

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
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
        f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin\n"
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
    host = SshHost(port, "root", root / "client_ed25519", pinned, tmp_path / "home", bin_dir)
    host.known_hosts()
    yield host
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def target(ssh_host: SshHost, tmp_path: Path) -> Iterator[Target]:
    root = tmp_path / "srv"
    yield Target(host="127.0.0.1", user=ssh_host.user, key=ssh_host.key,
                 known_hosts=ssh_host.home / ".ssh" / "known_hosts", port=ssh_host.port,
                 root=str(root))  # fmt: skip
    # Stop whatever a test left serving.
    for state in root.glob("current.json"):
        pid = json.loads(state.read_text())["handle"]
        subprocess.run(["kill", str(pid)], check=False)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mltrail.config import load_params
    from mltrail.stages import prepare_text, train_text
    from tests.builders import text_rows, write_csv
    from tests.conftest import PARAMS

    root = tmp_path_factory.mktemp("deploy-model")
    csv = write_csv(root / "r.csv", text_rows(30))
    params = load_params(PARAMS, [f"text.source.path={csv}",
                                  f"tracking.journal_dir={root / 'j'}"])  # fmt: skip
    prepare_text.run(params, root / "data", root, progress=False)
    train_text.run(params, "none", root / "data", root / "model")
    return root / "model"
