"""DVC with SSH host keys checked: ``mltrail dvc <dvc arguments>``.

DVC's SSH remote (dvc-ssh, through sshfs and asyncssh) connects with ``known_hosts=None``,
which makes asyncssh accept whatever host key the server shows: a remote reached through a
spoofed address or a man in the middle gets the data and the credentials, silently (a test
here pushed to a server whose pinned key did not match). ``mltrail dvc`` runs DVC's own
command line with one change: SSH remotes verify the server against a known_hosts file
(``$MLTRAIL_KNOWN_HOSTS``, else ``~/.ssh/known_hosts``), and refuse an unknown or changed key,
or a missing file. Everything else is DVC, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltrail.errors import MltrailError
from mltrail.settings import Environment, env_name

KNOWN_HOSTS_ENV = env_name(Environment, "known_hosts")


def known_hosts_file() -> Path:
    return Path(Environment.read().known_hosts or Path.home() / ".ssh" / "known_hosts")


def check_host_keys(known_hosts: Path | None = None) -> None:
    """Make DVC's SSH remotes verify host keys against ``known_hosts`` (fail closed)."""
    try:
        import dvc_ssh
    except ImportError:  # no SSH remotes possible: nothing to secure
        return
    path = str(known_hosts or known_hosts_file())
    original = dvc_ssh.SSHFileSystem._prepare_credentials
    if getattr(original, "_mltrail_checked", False):
        return

    def prepare(self: Any, **config: Any) -> dict[str, Any]:
        login: dict[str, Any] = original(self, **config)
        if not Path(path).is_file():
            raise MltrailError(
                f"no known_hosts file at {path}: refusing to trust an SSH remote's host key",
                hint="pin the host key: ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts (check "
                f"its fingerprint out of band), or set ${KNOWN_HOSTS_ENV}",
            )
        login["known_hosts"] = path
        return login

    prepare._mltrail_checked = True  # type: ignore[attr-defined]
    dvc_ssh.SSHFileSystem._prepare_credentials = prepare


def dvc(args: Sequence[str]) -> int:
    """DVC's command line, with SSH host keys checked."""
    from dvc.cli import main

    check_host_keys()
    return int(main(list(args)))
