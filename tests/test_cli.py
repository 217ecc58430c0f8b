from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mltrail.cli import main
from tests.conftest import PARAMS


def test_params_show_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "show", "--params", str(PARAMS), "--set", "text.sample_rows=123"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["text"]["sample_rows"] == 123
    assert shown["cifar10"]["seed"] == 42


def test_console_script_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mltrail", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("mltrail ")


def test_parsing_imports_only_the_standard_library() -> None:
    """``mltrail --help`` and the parsing of any command line import no third-party package
    and, of mltrail, only the command's modules, errors and paths: handlers import the rest."""
    code = (
        "import sys; before = set(sys.modules); "
        "from mltrail.cli import build_parser; build_parser().parse_args(['monitor', '--json']); "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.partition('.')[0] not in sys.stdlib_module_names))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(ast.literal_eval(result.stdout))
    light = {"mltrail", "mltrail.errors", "mltrail.paths"}
    assert {m for m in loaded if not m.startswith("mltrail.cli")} == light


def test_the_command_runs_as_a_module_of_its_own() -> None:
    """``python -m mltrail.cli`` (what mltrail deploy starts on a host) is the command."""
    result = subprocess.run(
        [sys.executable, "-m", "mltrail.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("mltrail ")


def test_serve_without_a_model_says_what_to_give(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("MLTRAIL_TEXT_MODEL", "MLTRAIL_IMAGE_MODEL", "MLTRAIL_SERVE_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert "no model to serve" in err and "--text-model" in err


def test_serve_settings_refuse_unknown_keys(tmp_path: Path) -> None:
    from mltrail.errors import ParamsError
    from mltrail.serve.settings import load_settings

    path = tmp_path / "serve.yaml"
    path.write_text("text_model: m\nmax_batch: 0\ntelemetry: {sinks: [kafka]}\n")
    with pytest.raises(ParamsError) as info:
        load_settings(path)
    assert "max_batch" in str(info.value) and "telemetry.sinks.0" in str(info.value)
