from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mltrail.cli import main
from tests.conftest import PARAMS

VERBS = [
    ["prepare", "text"],
    ["prepare", "cifar10"],
    ["train", "text"],
    ["train", "cifar10"],
    ["tracking", "sync"],
    ["clean", "models"],
    ["params", "show"],
    ["bench"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_every_sub_command_has_help(verb: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*verb, "--help"])
    assert info.value.code == 0
    assert "--params" in capsys.readouterr().out


def test_lineage_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["lineage", "--help"])
    assert info.value.code == 0 and "model_dir" in capsys.readouterr().out


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


def test_light_import_does_not_pull_heavy_libraries() -> None:
    code = (
        "import sys, mltrail.cli; "
        "heavy = [m for m in ('pandas', 'sklearn', 'torch', 'mlflow', 'wandb', 'dvc') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


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
