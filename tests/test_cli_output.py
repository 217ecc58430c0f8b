"""Output for machines and shells: ``--json`` and ``mltrail completion``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mltrail.cli import build_parser, main
from tests.conftest import PARAMS


def _verbs() -> list[str]:
    (verbs,) = [a for a in build_parser()._actions if a.dest == "verb"]
    return sorted(verbs.choices or {})


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_names_every_verb(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert {"lineage", "monitor", "params", "completion", "prepare"} <= set(_verbs())
    assert all(verb in script for verb in _verbs())
    assert "--summary-out" in script and "--download-dir" in script


def test_the_bash_completion_completes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["completion", "bash"])
    script = tmp_path / "mltrail.bash"
    script.write_text(capsys.readouterr().out)
    probe = (
        f"source {script}; "
        "COMP_WORDS=(mltrail lin); COMP_CWORD=1; _shtab_mltrail; echo ${COMPREPLY[@]}; "
        "COMP_WORDS=(mltrail params show --j); COMP_CWORD=3; _shtab_mltrail; echo ${COMPREPLY[@]}"
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["lineage", "--json"]


def test_params_show_json_is_the_yaml_output(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["params", "show", "--params", str(PARAMS), "--set", "text.sample_rows=9"]
    assert main(args) == 0
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    assert main([*args, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json == as_yaml and as_json["text"]["sample_rows"] == 9
