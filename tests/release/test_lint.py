"""The Dockerfile and the workflow pass their linters (hadolint, actionlint), and the workflow
keeps the properties the paper's lacked: pinned actions, pinned host keys, least privilege. It
would also pass on a hosted runner as shipped: the test job has its PostgreSQL and sshd, and
every DVC remote the workflow names is declared in the committed .dvc/config."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
PIPELINE = REPO / ".github" / "workflows" / "pipeline.yml"


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
    assert 'CMD ["mltrail", "serve", "--host", "0.0.0.0", "--port", "8080"]' in text
    assert re.search(r"^FROM .* AS build$", text, re.M) and re.search(
        r"^FROM .* AS runtime$", text, re.M
    )


def _workflow() -> dict[str, Any]:
    return dict(yaml.safe_load(PIPELINE.read_text()))


def _dvc_commands(job: dict[str, Any]) -> list[tuple[list[str], dict[str, str]]]:
    """Every ``dvc ...`` command in a job's run steps (``dvc``, ``.venv/bin/dvc`` or
    ``mltrail dvc``): its arguments after ``dvc``, and the step's environment."""
    found = []
    for step in job["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            for tail in re.findall(r"(?:^|[\s/(])dvc\s+([^)|;&\n]*)", line):
                args = [a.strip("\"'") for a in tail.split()]
                found.append((args, {k: str(v) for k, v in step.get("env", {}).items()}))
    return found


def _remotes_named(args: list[str]) -> list[str]:
    """The remotes one dvc command names: -r/--remote NAME, `remote add|modify|default|remove
    [options] NAME`, `config remote.NAME.option`."""
    names = [b for a, b in itertools.pairwise(args) if a in ("-r", "--remote")]
    names += [a.split("=", 1)[1] for a in args if a.startswith("--remote=")]
    if args[:1] == ["remote"] and args[1:2] and args[1] in ("add", "modify", "default", "remove"):
        names += [a for a in args[2:] if not a.startswith("-")][:1]
    if args[:1] == ["config"]:
        keys = [a for a in args[1:] if not a.startswith("-")]
        names += re.findall(r"^remote\.([^.]+)\.", keys[0] if keys else "")
    return names


def _committed_dvc_config() -> dict[str, Any]:
    from dvc.config import Config  # DVC's own reader of .dvc/config

    return dict(Config.load_file(str(REPO / ".dvc" / "config")))


def test_every_dvc_remote_the_workflow_names_is_declared_in_dvc_config() -> None:
    """A remote set only in .dvc/config.local would be missing on a fresh runner: `dvc remote
    modify --local NAME` fails there with "remote 'NAME' doesn't exist"."""
    pytest.importorskip("dvc")
    from dvc.config import Config

    config = _committed_dvc_config()
    Config.validate(config)  # on its own: every remote has a URL DVC accepts
    assert config["core"]["remote"] == "local"  # the README's `dvc push` goes to ../dvc-remote
    declared = set(config["remote"])
    jobs = _workflow()["jobs"]
    named = {n for job in jobs.values() for args, _ in _dvc_commands(job)
             for n in _remotes_named(args)}  # fmt: skip
    assert "team" in named, "the release job names no DVC remote: the parser missed it"
    assert named <= declared, f"named in the workflow, not in .dvc/config: {named - declared}"
    # The default remote is a folder beside the clone, absent on a runner: the release job's
    # pull and push name their remote.
    for args, _ in _dvc_commands(jobs["release"]):
        if args[:1] in (["pull"], ["push"]):
            assert _remotes_named(args), f"`dvc {' '.join(args)}` uses the default remote"
    # Each remote's URL is set on the runner from a secret, in .dvc/config.local.
    for name in named:
        urls = [env.get(args[-1].lstrip("$").strip("{}"), "")
                for args, env in _dvc_commands(jobs["release"])
                if args[:5] == ["remote", "modify", "--local", name, "url"]]  # fmt: skip
        assert urls and all(u.startswith("${{ secrets.") for u in urls), (name, urls)


def test_the_workflows_dvc_config_commands_run_on_a_fresh_clone(tmp_path: Path) -> None:
    """The release job's `dvc remote modify --local` commands, run against the committed
    .dvc/config in a fresh folder: they succeed and the secret's URL wins over the committed
    one, while the default remote stays the local folder."""
    dvc = BIN / "dvc"
    assert dvc.exists(), "dvc is not installed: run scripts/setup"
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text((REPO / ".dvc" / "config").read_text())
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path)}
    url = "ssh://deploy@127.0.0.1:2222/srv/dvc"

    def run(*args: str) -> str:
        done = subprocess.run([str(dvc), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout.strip()

    ran = 0
    for args, _ in _dvc_commands(_workflow()["jobs"]["release"]):
        if args[:3] == ["remote", "modify", "--local"]:
            run(*args[:5], url if args[4] == "url" else str(tmp_path / "key"))
            ran += 1
    assert ran >= 2, "the release job sets no remote URL and key with --local"
    assert run("config", "remote.team.url") == url
    assert run("config", "core.remote") == "local"
    assert "team" in (tmp_path / ".dvc" / "config.local").read_text()


def test_the_test_job_has_postgresql_and_sshd_as_ci_run_does() -> None:
    """The tests reach PostgreSQL at 127.0.0.1:5432 as postgres without a password
    (tests/conftest.py), and start sshd (Debian's openssh-server)."""
    job = _workflow()["jobs"]["test"]
    postgres = job["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+(@sha256:[0-9a-f]{64})?", postgres["image"])
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in postgres["ports"] and "pg_isready" in postgres["options"]
    assert "postgresql://postgres@127.0.0.1:5432/" in (REPO / "tests" / "conftest.py").read_text()
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    update, install = runs.find("apt-get update"), runs.find("apt-get install -y -q openssh-server")
    assert 0 <= update < install, "sshd is installed without `apt-get update` first"
    assert re.search(r"^scripts/test\b", runs, re.M)  # the README's test command
