"""The server's settings: file < environment < command line, nested keys by variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mltrail.errors import ParamsError
from mltrail.serve.settings import ServeSettings, load_settings
from mltrail.settings import variables


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _setenv(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


def test_file_then_environment_then_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path, "port: 81\nhost: 10.0.0.1\nmax_batch: 5\napi_key: from-file\n")
    # An empty variable is unset.
    _setenv(monkeypatch, MLTRAIL_PORT="82", MLTRAIL_API_KEY="from-env", MLTRAIL_MAX_BATCH="")
    settings = load_settings(path, port=83, host=None)  # None: not given
    assert isinstance(settings, ServeSettings)
    assert (settings.port, settings.host, settings.max_batch) == (83, "10.0.0.1", 5)
    assert settings.api_key == "from-env"
    assert load_settings(path).port == 82


def test_nested_keys_have_variables_and_merge_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path, "telemetry: {sqlite_path: t.db, queue_size: 7}\n")
    _setenv(
        monkeypatch,
        MLTRAIL_TELEMETRY__SINKS='["sqlite", "wandb"]',
        MLTRAIL_TELEMETRY__QUEUE_SIZE="9",
    )
    telemetry = load_settings(path).telemetry
    assert telemetry.sinks == ["sqlite", "wandb"] and telemetry.queue_size == 9
    assert telemetry.sqlite_path == str(tmp_path / "t.db")  # from the file, made absolute


def test_the_telemetry_dsn_is_the_postgres_dsn_below_its_nested_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path, "telemetry: {postgres_dsn: postgresql://file@h/db}\n")
    monkeypatch.setenv("MLTRAIL_TELEMETRY_DSN", "postgresql://dsn@h/db")
    assert load_settings(path).telemetry.postgres_dsn == "postgresql://dsn@h/db"
    monkeypatch.setenv("MLTRAIL_TELEMETRY__POSTGRES_DSN", "postgresql://nested@h/db")
    assert load_settings(path).telemetry.postgres_dsn == "postgresql://nested@h/db"


def test_the_settings_file_from_the_environment_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLTRAIL_SERVE_SETTINGS", str(_file(tmp_path, "max_batch: 3\n")))
    assert load_settings().max_batch == 3
    other = tmp_path / "other.yaml"
    other.write_text("max_batch: 4\n")
    assert load_settings(other).max_batch == 4


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MLTRAIL_PORT", "eighty", "port"),
        ("MLTRAIL_TELEMETRY__SINKS", '["kafka"]', "telemetry.sinks.0"),
        ("MLTRAIL_TELEMETRY__SINKS", "sqlite", "JSON"),
        ("MLTRAIL_TELEMETRY__NO_SUCH_KEY", "1", "telemetry.no_such_key"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ParamsError, match="invalid server settings") as info:
        load_settings()
    assert message in str(info.value)


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read server settings"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_settings(_file(tmp_path, "- a list\n"))
