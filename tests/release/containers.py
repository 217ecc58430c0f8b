"""The serving image, for the tests that run containers (marked ``containers``): built once per
session by scripts/build-image (buildah, from the local Debian base: no registry is reachable)
into the container store podman uses, where `podman kube play` and podman-docker's `docker`
find it. podman runs with tests/release/containers.conf (CONTAINERS_CONF): runc, cgroupfs, lower
ulimits, which the machines of this project need (../shared/ENVIRONMENT.md)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
IMAGE = "localhost/mltrail:test"
"""The image the tests build: tagged apart from scripts/build-image's default (latest)."""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    """``podman ARGS`` with the tests' settings; its output, or a failure showing it."""
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip(
            "podman is not installed: scripts/test installs it when run as root "
            "(apt-get install podman runc podman-docker)"
        )


@functools.cache
def serving_image() -> str:
    """:data:`IMAGE` in podman's store, built from this checkout (cached layers make a rebuild
    take about a minute; the first build, with the base, several). ``$MLTRAIL_TEST_IMAGE``
    names an image already in podman's store to use instead, without building (a quick rerun)."""
    given = os.environ.get("MLTRAIL_TEST_IMAGE")
    if given:
        podman("image", "exists", given)
        return given
    env = {**os.environ, "MLTRAIL_IMAGE": IMAGE}
    done = subprocess.run(
        [str(REPO / "scripts" / "build-image"), "--no-check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/build-image failed:\n{(done.stdout + done.stderr)[-4000:]}")
    # buildah and podman share one store only when they agree on its driver ($STORAGE_DRIVER,
    # storage.conf): say so here rather than as a missing image in the test.
    if subprocess.run(["podman", "image", "exists", IMAGE], env=podman_env()).returncode != 0:
        pytest.fail(
            f"scripts/build-image built {IMAGE}, but podman does not see it: buildah and "
            "podman use different container stores (compare `buildah info` and "
            "`podman info`, their graph driver and root)"
        )
    return IMAGE


def image_size_mb(image: str) -> float:
    """The image's size as podman reports it (MB, 10^6 bytes)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).strip()) / 1e6
