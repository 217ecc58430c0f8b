"""``mltrail deploy``: a new release onto a host over SSH, behind a health gate, with rollback.

Blue/green on two ports of the target: the new release starts beside the serving one on the
other port; when its ``/health`` and ``/ready`` answer within the timeout, the host's
``current.json`` is switched to it (what a proxy or load balancer in front reads) and the old
one is stopped. If the gate fails, the new one is stopped, the old one keeps serving and
``current.json`` is untouched: the command exits non-zero saying it rolled back. Every attempt
is appended to ``deployments.jsonl`` on the host; the release tag reaches the server as
``MLTRAIL_IMAGE_TAG``, so ``/version`` shows it.

Runtimes: ``docker`` (the image tag run as a container, as the paper deploys) and
``process`` (the server run as a process from an mltrail installation on the host, the models
copied into the release folder). The docker runtime takes the image from the host's store when
it is there, else ``docker pull``; with ``ship_image`` it is sent from this machine (``docker
save | ssh HOST docker load``), for a host that reaches no registry. Both run against a real
sshd in the tests; docker as podman behind a ``docker`` command (podman-docker). SSH always
checks the host key against a pinned known_hosts file (``StrictHostKeyChecking=yes``); an
unknown or changed key stops the deploy.

Hardening, and why:

- **The tag is a strict pattern** (:data:`TAG_PATTERN`, a Docker tag's): it names a folder
  that is removed and re-created on the host, so ``../x`` or ``""`` would reach outside the
  release or remove every release. It is checked when the :class:`Release` is made, before
  anything runs; the removal also resolves the folder on the host and refuses anything but a
  direct child of ``<root>/releases``.
- **Secrets never on a command line**: the release's environment (the API key, the telemetry
  DSN) travels over the SSH session's stdin into a file created with mode 0600 in the release
  folder (``server.env``; the docker runtime reads it with ``--env-file``). A command line is
  visible to every user of both machines in ``ps``; stdin and a 0600 file are not.
- **Errors are redacted**: every message this module raises has each secret value replaced by
  ``***`` (a failed command's output can echo what it was given).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mltrail.errors import MltrailError
from mltrail.telemetry import DEFAULT_STORE

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""A release tag: a Docker image tag that is also one safe path component (no ``/``, never
``.`` or ``..``, never empty)."""
ENV_FILE = "server.env"
"""The release's environment on the host, mode 0600 (see the module's docstring)."""
REDACTED = "***"
CONTAINER_PORT = 8080
"""The port the server listens on inside the container: the image's own (its ``CMD`` and
``HEALTHCHECK``), above 1024 because it runs as a user without privileges (10001)."""
STOP_TIMEOUT_S = 75
"""Seconds ``docker stop`` waits after SIGTERM before SIGKILL: the server's graceful shutdown
(30 s) then its telemetry drain (``telemetry.shutdown_timeout_s``, 30 s), with a margin, as
deploy/k8s's terminationGracePeriodSeconds. Docker's default of 10 s cut the drain short."""


class DeployError(MltrailError):
    """The deploy did not switch to the new release (the old one, if any, still serves)."""


@dataclass(frozen=True)
class Target:
    host: str
    user: str
    key: Path
    known_hosts: Path
    port: int = 22
    root: str = "/srv/mltrail"
    """Folder on the host: releases/<tag>/, current.json, deployments.jsonl."""

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.key),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "ConnectTimeout=10",
        ]

    def ssh_argv(self, command: str) -> list[str]:
        """``ssh`` running ``command`` on the host, with the pinned key and host key."""
        return [
            "ssh",
            *self.ssh_options(),
            "-p",
            str(self.port),
            f"{self.user}@{self.host}",
            command,
        ]

    def run(self, command: str, timeout_s: float = 120, stdin: str | None = None) -> str:
        """``command`` through a shell on the host; ``stdin`` is what it reads (where secrets
        go: never into ``command``, which every user sees in ``ps``)."""
        done = subprocess.run(
            self.ssh_argv(command),
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()[-1500:]
            if "host key" in message.lower() or "known_hosts" in message.lower():
                raise DeployError(
                    f"refused: {self.host}:{self.port} did not present the pinned host key "
                    f"({message.splitlines()[-1] if message else 'no detail'})",
                    hint=f"check the host; the pinned key is in {self.known_hosts}",
                )
            raise DeployError(f"on {self.host}: `{command[:200]}` failed: {message}")
        return done.stdout

    def upload(self, local: Path, remote: str) -> None:
        argv = [
            "scp",
            *self.ssh_options(),
            "-P",
            str(self.port),
            "-r",
            "-q",
            str(local),
            f"{self.user}@{self.host}:{remote}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise DeployError(f"copying {local} to {self.host}:{remote} failed: {done.stderr}")


@dataclass(frozen=True)
class Release:
    tag: str
    runtime: Literal["process", "docker"] = "process"
    text_model: Path | None = None  # process runtime: model folders copied into the release
    image_model: Path | None = None
    image: str = "mltrail"  # docker runtime: the image, without its tag
    python: str = "python3"  # process runtime: the interpreter with mltrail on the host
    env: dict[str, str] = field(default_factory=dict)  # e.g. MLTRAIL_API_KEY from a secret
    ship_image: bool = False  # docker runtime: `docker save | ssh HOST docker load`, no registry

    def __post_init__(self) -> None:
        check_tag(self.tag)
        for key, value in self.env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or "\n" in value or "\0" in value:
                raise DeployError(
                    f"the release environment's {key!r} cannot be passed on: a name is letters, "
                    "digits and _, a value one line"
                )

    def secrets(self) -> list[str]:
        """The values to keep out of every message (the whole environment but the tag)."""
        return [value for value in self.env.values() if value]


def check_tag(tag: str) -> str:
    """``tag`` when it matches :data:`TAG_PATTERN`; :class:`DeployError` otherwise."""
    if not TAG_PATTERN.fullmatch(tag):
        raise DeployError(
            f"release tag {tag!r} is not a tag: it must match {TAG_PATTERN.pattern}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit "
            "(e.g. 2026-01-02.1 or the git commit)",
        )
    return tag


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first, so that a secret
    containing another is not half shown)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _gate_script(port: int, timeout_s: float) -> str:
    code = (
        "import sys, time, urllib.request as u\n"
        f"end = time.time() + {timeout_s}\n"
        "while time.time() < end:\n"
        "    try:\n"
        f"        ok = all(u.urlopen('http://127.0.0.1:{port}' + p, timeout=2).status == 200"
        " for p in ('/health', '/ready'))\n"
        "        if ok: sys.exit(0)\n"
        "    except Exception: pass\n"
        "    time.sleep(0.5)\n"
        "sys.exit(1)\n"
    )
    return f"python3 -c {shlex.quote(code)}"


def deploy(
    target: Target,
    release: Release,
    ports: tuple[int, int] = (8001, 8002),
    timeout_s: float = 60,
) -> dict[str, object]:
    """Deploy ``release``; return the new current.json. Raises DeployError after a rollback,
    its message and hint free of the release's secrets."""
    try:
        return _deploy(target, release, ports, timeout_s)
    except DeployError as exc:
        secrets = release.secrets()
        hint = redact(exc.hint, secrets) if exc.hint else None
        raise DeployError(redact(exc.message, secrets), hint=hint) from None


def _deploy(
    target: Target, release: Release, ports: tuple[int, int], timeout_s: float
) -> dict[str, object]:
    root = shlex.quote(target.root)
    target.run(f"mkdir -p {root}/releases")
    current = json.loads(target.run(f"cat {root}/current.json 2>/dev/null || echo null"))
    port = ports[1] if current and current.get("port") == ports[0] else ports[0]
    folder = f"{target.root}/releases/{release.tag}"
    _fresh_folder(target, folder)
    _write_env(target, folder, {**release.env, "MLTRAIL_IMAGE_TAG": release.tag}, release.runtime)
    if release.runtime == "process":
        handle = _start_process(target, release, folder, port)
    else:
        handle = _start_container(target, release, folder, port)
    record: dict[str, object] = {
        "tag": release.tag,
        "runtime": release.runtime,
        "port": port,
        "handle": handle,
        "previous": current.get("tag") if current else None,
        "time": time.time(),
    }
    passed = (
        subprocess.run(
            target.ssh_argv(_gate_script(port, timeout_s)),
            capture_output=True,
            timeout=timeout_s + 60,
        ).returncode
        == 0
    )
    if not passed:
        _stop(target, release.runtime, handle, folder)
        _log(target, record | {"result": "rolled back"})
        still = (
            f"{current['tag']} still serves on port {current['port']}"
            if current
            else ("nothing was serving before")
        )
        raise DeployError(
            f"release {release.tag} failed its health gate (/health, /ready within "
            f"{timeout_s:.0f} s) and was stopped: rolled back; {still}",
            hint=f"its log: {folder}/server.log on {target.host}",
        )
    state = json.dumps(record)
    target.run(
        f"printf '%s\\n' {shlex.quote(state)} > {root}/current.json.tmp && "
        f"mv {root}/current.json.tmp {root}/current.json"
    )
    if current:
        previous = f"{target.root}/releases/{current['tag']}"
        _stop(target, str(current["runtime"]), str(current["handle"]), previous)
    _log(target, record | {"result": "switched"})
    return record


def _fresh_folder(target: Target, folder: str) -> None:
    """Remove and re-create the release folder; the host resolves it first and refuses
    anything but a direct child of ``<root>/releases`` (the tag's pattern already keeps it
    there: this holds even through a symlink planted on the host)."""
    q = shlex.quote
    script = (
        f"r=$(realpath -m -- {q(target.root)}/releases) && f=$(realpath -m -- {q(folder)}) && "
        'case "${f#"$r"/}" in ""|*/*|"$f") '
        'echo "refusing to remove $f: not a release folder inside $r" >&2; exit 3;; esac && '
        'rm -rf -- "$f" && mkdir -p -- "$f/models"'
    )
    target.run(script)


def _write_env(target: Target, folder: str, env: dict[str, str], runtime: str) -> None:
    """The release's environment into ``<folder>/server.env``, mode 0600, over stdin: for the
    process runtime as shell assignments the start command sources, for docker as the
    ``KEY=value`` lines of ``--env-file`` (which takes values literally)."""
    q = shlex.quote
    if runtime == "process":
        body = "".join(f"export {k}={q(v)}\n" for k, v in env.items())
    else:
        body = "".join(f"{k}={v}\n" for k, v in env.items())
    path = q(f"{folder}/{ENV_FILE}")
    target.run(f"umask 077 && rm -f {path} && cat > {path} && chmod 600 {path}", stdin=body)


def _start_process(target: Target, release: Release, folder: str, port: int) -> str:
    q = shlex.quote
    args = []
    for kind, local in (("text", release.text_model), ("image", release.image_model)):
        if local is not None:
            target.upload(local, f"{folder}/models/{kind}")
            args += [f"--{kind}-model", f"{folder}/models/{kind}"]
    settings = (
        f"telemetry: {{sqlite_path: {folder}/{DEFAULT_STORE}, "
        f"spill_dir: {folder}/telemetry-spill}}\n"
    )
    # Only the server goes to the background, its output to a file: a background job still
    # holding the SSH session's output would keep this command from returning. Its
    # environment comes from the 0600 file, sourced in the subshell: never on a command line.
    command = (
        f"cd {q(folder)} && printf %s {q(settings)} > serve.yaml && "
        f"{{ ( . ./{ENV_FILE} && exec nohup {q(release.python)} -m mltrail.cli serve "
        f"--settings serve.yaml --host 127.0.0.1 --port {port} {' '.join(map(q, args))} ) "
        "> server.log 2>&1 < /dev/null & echo $!; }"
    )
    return target.run(command).strip()


def _start_container(target: Target, release: Release, folder: str, port: int) -> str:
    q = shlex.quote
    image = f"{release.image}:{release.tag}"
    name = f"mltrail-{release.tag}"
    if release.ship_image:
        _ship_image(target, image)
    else:  # an image already on the host (loaded, or built there) needs no registry
        target.run(
            f"docker image inspect {q(image)} >/dev/null 2>&1 || docker pull {q(image)}",
            timeout_s=900,
        )
    # The command is the image's CMD on CONTAINER_PORT (see there). The server's output stays
    # with the container (`docker logs`); _stop copies it into the release folder.
    target.run(
        f"docker rm -f {q(name)} >/dev/null 2>&1 || true; docker run -d --name {q(name)} "
        f"--restart unless-stopped --stop-timeout {STOP_TIMEOUT_S} "
        f"-p 127.0.0.1:{port}:{CONTAINER_PORT} --env-file {q(f'{folder}/{ENV_FILE}')} "
        f"{q(image)} mltrail serve --host 0.0.0.0 --port {CONTAINER_PORT}"
    )
    return name


def _ship_image(target: Target, image: str) -> None:
    """``docker save IMAGE | ssh HOST docker load``: the image from this machine's store to the
    host's, without a registry."""
    save = subprocess.Popen(
        ["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert save.stdout is not None
    load = subprocess.run(
        target.ssh_argv("docker load"),
        stdin=save.stdout,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    save.stdout.close()
    save_err = save.communicate(timeout=60)[1].decode(errors="replace")
    if save.returncode != 0:
        raise DeployError(
            f"`docker save {image}` failed here: {save_err.strip()[-1500:]}",
            hint="build or pull the image on this machine first, or deploy without --ship-image "
            "(the host then uses its own copy or pulls it)",
        )
    if load.returncode != 0:
        raise DeployError(
            f"`docker load` of {image} failed on {target.host}: {load.stderr.strip()[-1500:]}"
        )


def _stop(target: Target, runtime: str, handle: str, folder: str | None = None) -> None:
    if runtime == "docker":
        # SIGTERM, as for a process, with time for the drain; then the container's output
        # (its shutdown included) into the release folder, where the rollback's hint points.
        q = shlex.quote
        log = f"> {q(f'{folder}/server.log')} 2>&1" if folder else ">/dev/null 2>&1"
        target.run(
            f"docker stop -t {STOP_TIMEOUT_S} {q(handle)} >/dev/null 2>&1; "
            f"docker logs {q(handle)} {log} || true",
            timeout_s=STOP_TIMEOUT_S + 60,
        )
    elif handle.isdigit():  # SIGTERM: the server finishes its requests and flushes telemetry
        target.run(
            f"kill {handle} 2>/dev/null; for i in $(seq 60); do "
            f"kill -0 {handle} 2>/dev/null || exit 0; sleep 0.5; done"
        )


def _log(target: Target, record: dict[str, object]) -> None:
    line = shlex.quote(json.dumps(record))
    target.run(f"printf '%s\\n' {line} >> {shlex.quote(target.root)}/deployments.jsonl")
