"""The serving image names the commit and the models it was built from, also when the build
was a cache hit: buildah's layer cache keys a LABEL step on its text, not on the build args it
expands, so before scripts/build-image stamped the labels with --label a rebuild at a new
commit kept the first build's revision and time (found 2026-12-03)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.release.containers import REPO, podman, require_podman, serving_image


@pytest.mark.containers
def test_the_image_names_this_checkouts_commit() -> None:
    require_podman()
    image = serving_image()
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image))
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    # "-dirty" when the checkout's image inputs have uncommitted changes (a working copy).
    assert labels["org.opencontainers.image.revision"] in (head, f"{head}-dirty")
    for task in ("text", "image"):
        sha = labels[f"io.mltrail.{task}-model.sha256"]
        assert len(sha) == 64 and int(sha, 16) >= 0
    created = labels["org.opencontainers.image.created"]
    assert created.endswith("Z") and created[:4].isdigit()
