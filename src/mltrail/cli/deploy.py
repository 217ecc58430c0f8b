"""``mltrail deploy``: a release over SSH, blue/green with a health gate, switched or rolled
back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from mltrail.cli._common import Args, set_command
from mltrail.errors import MltrailError

NAME = "deploy"

Runtime = Literal["process", "docker"]


@dataclass(frozen=True, kw_only=True)
class DeployArgs(Args):
    host: str
    user: str
    key: Path
    known_hosts: Path
    ssh_port: int
    root: str
    tag: str
    runtime: Runtime
    image: str
    ship_image: bool
    text_model: Path | None
    image_model: Path | None
    python: str
    ports: str
    timeout: float


def cmd_deploy(args: DeployArgs) -> int:
    import os

    from mltrail.release.deploy import Release, Target, deploy
    from mltrail.telemetry import STORE_ENV

    env = {k: os.environ[k] for k in ("MLTRAIL_API_KEY", STORE_ENV) if k in os.environ}
    # The release first: it checks the tag (a folder on the host) before anything runs.
    release = Release(
        args.tag,
        args.runtime,
        args.text_model,
        args.image_model,
        args.image,
        args.python,
        env,
        ship_image=args.ship_image,
    )
    # In the order of their fields, as the options are named.
    target = Target(args.host, args.user, args.key, args.known_hosts, args.ssh_port, args.root)
    ports = tuple(int(p) for p in args.ports.split(","))
    if len(ports) != 2:
        raise MltrailError("--ports takes two ports, e.g. 8001,8002")
    record = deploy(target, release, (ports[0], ports[1]), args.timeout)
    print(f"deployed {record['tag']} on port {record['port']} (previous: {record['previous']})")
    return 0


HELP = "deploy a release over SSH: start beside the old, health gate, switch or roll back"
DESCRIPTION = """Blue/green on two ports of the host; SSH checks the host key against
--known-hosts. MLTRAIL_API_KEY and MLTRAIL_TELEMETRY_DSN are passed on from this
environment, over stdin into a 0600 file on the host (never on a command line). The tag is
letters, digits, '.', '_' and '-'. Exits non-zero after a rollback."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", type=Path, required=True, help="SSH private key")
    parser.add_argument("--known-hosts", type=Path, required=True, help="the pinned host key")
    parser.add_argument("--ssh-port", type=int, default=22)
    parser.add_argument("--root", default="/srv/mltrail", help="release folder on the host")
    parser.add_argument(
        "--tag", required=True, help="release tag (the image tag): letters, digits, . _ -"
    )
    parser.add_argument("--runtime", choices=get_args(Runtime), default="docker")
    parser.add_argument("--image", default="mltrail", help="docker: the image, without its tag")
    parser.add_argument(
        "--ship-image",
        action="store_true",
        help="docker: send the image from this machine (docker save | ssh HOST docker load) "
        "instead of using the host's copy or pulling it",
    )
    parser.add_argument("--text-model", type=Path, help="process: model folder to ship")
    parser.add_argument("--image-model", type=Path, help="process: model folder to ship")
    parser.add_argument("--python", default="python3", help="process: interpreter on the host")
    parser.add_argument("--ports", default="8001,8002", help="the two blue/green ports")
    parser.add_argument("--timeout", type=float, default=60, help="health gate, seconds")
    set_command(parser, DeployArgs, cmd_deploy)
