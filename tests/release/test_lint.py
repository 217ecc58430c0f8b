"""The Dockerfile and the workflow pass their linters (hadolint, actionlint), and the workflow
keeps the properties the paper's lacked: pinned actions, pinned host keys, least privilege."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize(("tool", "target"), [
    ("hadolint", ["Dockerfile"]),
    ("actionlint", [str(p.relative_to(REPO)) for p in WORKFLOWS]),
])  # fmt: skip
def test_linters_pass(tool: str, target: list[str]) -> None:
    exe = BIN / tool  # both come with the dev extra (scripts/setup): missing is a failure
    assert exe.exists(), f"{tool} is not installed: run scripts/setup"
    done = subprocess.run([str(exe), *target], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflow_pins_actions_and_host_keys_with_least_privilege() -> None:
    text = (REPO / ".github" / "workflows" / "pipeline.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {"contents": "read"}
    uses = re.findall(r"uses: ([^\s]+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert "StrictHostKeyChecking=no" not in text and "StrictHostKeyChecking=yes" in text
    assert "DVC_KNOWN_HOSTS" in text and "mltrail dvc pull" in text
    steps = workflow["jobs"]["release"]["steps"]
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action"))
    assert ":latest" in build["with"]["tags"] and "stamp" in build["with"]["tags"]
    assert "secrets" not in build["with"]["build-args"]  # no secret in a build argument


def test_the_image_runs_as_a_user_and_checks_its_health() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text and "EXPOSE 80" in text
    assert 'CMD ["mltrail", "serve", "--host", "0.0.0.0", "--port", "80"]' in text
    assert re.search(r"^FROM .* AS build$", text, re.M) and re.search(
        r"^FROM .* AS runtime$", text, re.M
    )
