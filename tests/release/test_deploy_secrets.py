"""`mltrail deploy` cannot be turned against its host: a tag outside the pattern is refused
before anything runs, removals stay inside the releases folder, and the secrets it passes on
(API key, DSN password) are on no command line and in no error message. Against a real sshd."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mltrail.release.deploy import DeployError, Release, Target, deploy
from tests.conftest import free_port
from tests.release.conftest import SshHost

API_KEY = "key-b7c1e0-SECRET"
DSN_PASSWORD = "pw-4d2a9f-SECRET"
SECRETS = (API_KEY, DSN_PASSWORD)


@pytest.fixture
def argv_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every command line the deploy starts locally (ssh, scp), as `ps` would show it; the
    commands still run for real."""
    seen: list[str] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append(" ".join(argv))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr("mltrail.release.deploy.subprocess.run", recording_run)
    yield seen


def _secret_env() -> dict[str, str]:
    return {
        "MLTRAIL_API_KEY": API_KEY,
        "MLTRAIL_TELEMETRY_DSN": f"postgresql://someone:{DSN_PASSWORD}@db.invalid/telemetry",
    }


@pytest.mark.parametrize("tag", ["../../victim", "", "a/b", "..", ".", "-rf", "x y", "t;id"])
def test_a_tag_outside_the_pattern_is_refused_before_anything_runs(
    target: Target,
    tmp_path: Path,
    tag: str,
) -> None:
    # What `--tag ../../victim` reached (the test's tmp folder) and what `--tag ''` removed.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    old = Path(target.root) / "releases" / "r0"
    old.mkdir(parents=True)
    (old / "keep").write_text("an older release")
    with pytest.raises(DeployError, match="is not a tag"):
        deploy(target, Release(tag, python=sys.executable), (free_port(), free_port()), 5)
    assert (victim / "keep").read_text() == "mine"
    assert (old / "keep").read_text() == "an older release"
    assert sorted(p.name for p in (Path(target.root) / "releases").iterdir()) == ["r0"]


def test_the_cli_refuses_a_bad_tag_with_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mltrail.cli", "deploy", "--host", "127.0.0.1", "--user", "u",
         "--key", str(tmp_path / "k"), "--known-hosts", str(tmp_path / "kh"),
         "--tag", "../../victim", "--runtime", "process"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "'../../victim' is not a tag" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_release_folder_that_resolves_outside_the_releases_is_not_removed(
    target: Target,
    tmp_path: Path,
) -> None:
    # A symlink planted on the host: the tag is valid, its folder resolves elsewhere.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    releases = Path(target.root) / "releases"
    releases.mkdir(parents=True)
    (releases / "r1").symlink_to(victim)
    with pytest.raises(DeployError, match=r"refusing to remove .*not a release folder"):
        deploy(target, Release("r1", python=sys.executable), (free_port(), free_port()), 5)
    assert (victim / "keep").read_text() == "mine"
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]


def test_process_release_gets_its_secrets_through_a_0600_file_never_argv(
    target: Target,
    text_model: Path,
    argv_seen: list[str],
) -> None:
    release = Release("r1", text_model=text_model, python=sys.executable, env=_secret_env())
    record = deploy(target, release, (free_port(), free_port()), 60)
    assert argv_seen and not any(s in line for line in argv_seen for s in SECRETS)
    env_file = Path(target.root) / "releases" / "r1" / "server.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    pid = int(str(record["handle"]))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "mltrail.cli" in cmdline and not any(s in cmdline for s in SECRETS)
    # The server has them all the same: the key guards /predict.
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    assert f"MLTRAIL_API_KEY={API_KEY}" in environ
    url = f"http://127.0.0.1:{record['port']}/predict/text"
    body = {"texts": ["a fine film"]}
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert ok.status_code == 200


FAKE_DOCKER = """#!/bin/sh
# docker, as far as a deploy needs: pull works; run records what `ps` shows, then fails the
# way a real error may, echoing what it was given (its arguments and its env file).
case "$1" in
  pull) exit 0 ;;
  rm|stop) exit 0 ;;
  run)
    ps -eo args > "{ps_file}"
    envfile=""
    prev=""
    for a in "$@"; do [ "$prev" = "--env-file" ] && envfile="$a"; prev="$a"; done
    echo "docker: invalid run $*; env: $(cat "$envfile" 2>/dev/null)" >&2
    exit 125 ;;
esac
exit 1
"""


def test_a_failed_docker_deploy_shows_no_secret(
    target: Target,
    ssh_host: SshHost,
    tmp_path: Path,
    argv_seen: list[str],
) -> None:
    ps_file = tmp_path / "ps.txt"
    docker = ssh_host.bin / "docker"
    docker.write_text(FAKE_DOCKER.replace("{ps_file}", str(ps_file)))
    docker.chmod(0o755)
    release = Release("r1", runtime="docker", env=_secret_env())
    with pytest.raises(DeployError) as failed:
        deploy(target, release, (free_port(), free_port()), 5)
    message = str(failed.value)
    assert "docker: invalid run" in message and "MLTRAIL_API_KEY=***" in message
    assert not any(s in message for s in SECRETS)
    # Not on any command line of this machine while docker ran, nor on the ssh client's.
    table = ps_file.read_text()
    assert "--env-file" in table and not any(s in table for s in SECRETS)
    assert not any(s in line for line in argv_seen for s in SECRETS)
    env_file = Path(target.root) / "releases" / "r1" / "server.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"MLTRAIL_API_KEY={API_KEY}\n" in env_file.read_text()


def test_redact_hides_every_secret_even_one_inside_another() -> None:
    from mltrail.release.deploy import redact

    assert redact("a=abcdef b=abc", ["abc", "abcdef"]) == "a=*** b=***"
