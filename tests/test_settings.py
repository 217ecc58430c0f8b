"""Every MLTRAIL_* variable is declared once, in mltrail.settings, and the docs list them as
declared. ``python -m tests.test_settings`` prints the tables the docs hold."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection
from pathlib import Path

import pytest
from pydantic import BaseModel

from mltrail.paths import resolve_environment
from mltrail.settings import Environment, ServeSettingsBase, Variable, env_name, variables
from tests.conftest import REPO

SRC = REPO / "src" / "mltrail"
NAME = re.compile(r"MLTRAIL_[A-Z0-9_]+")


def _literal_names() -> dict[str, set[str]]:
    """Each ``MLTRAIL_*`` name in a string literal (docstrings and f-string parts too) of
    src/, with the modules it appears in."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in NAME.findall(node.value):
                    found.setdefault(name, set()).add(str(path.relative_to(SRC)))
    return found


def test_every_variable_named_in_src_is_declared() -> None:
    declared = variables()
    literals = _literal_names()
    assert "MLTRAIL_DATA_MIRROR" in literals and "MLTRAIL_API_KEY" in literals  # the scan works
    undeclared = {
        f"{name} (in {', '.join(sorted(where))})"
        for name, where in literals.items()
        if not _is_declared(name, declared)
    }
    assert not undeclared, sorted(undeclared)


def _is_declared(name: str, declared: Collection[str]) -> bool:
    """Declared; or a prefix (``MLTRAIL_TELEMETRY__`` of ``MLTRAIL_TELEMETRY__<KEY>``)."""
    return name in declared or (name.endswith("_") and any(d.startswith(name) for d in declared))


def test_every_setting_and_nested_key_has_a_variable() -> None:
    names = variables()
    assert env_name(ServeSettingsBase, "telemetry", "sinks") == "MLTRAIL_TELEMETRY__SINKS"
    assert names["MLTRAIL_TELEMETRY__SINKS"].key == "telemetry.sinks"
    assert names["MLTRAIL_API_KEY"].model is ServeSettingsBase
    assert names["MLTRAIL_TELEMETRY_DSN"].model is Environment
    everywhere = {env_name(Environment, field) for field in Environment.model_fields}
    server = {name for name, v in names.items() if v.model is ServeSettingsBase}
    assert everywhere.isdisjoint(server) and everywhere | server == set(names)
    with pytest.raises(KeyError):
        env_name(Environment, "data_mirorr")


def test_the_environment_reads_set_variables_only() -> None:
    env = Environment.read({"MLTRAIL_DATA_MIRROR": "/m", "MLTRAIL_KNOWN_HOSTS": "", "OTHER": "x"})
    assert env.data_mirror == "/m" and env.known_hosts is None and env.cnn_runtime == "auto"


def test_every_declared_path_variable_is_made_absolute(tmp_path: Path) -> None:
    holding = [name for name, v in variables().items() if v.holds and v.holds.what != "sqlite_uri"]
    assert {"MLTRAIL_DATA_MIRROR", "MLTRAIL_TELEMETRY__SQLITE_PATH"} <= set(holding)
    env = dict.fromkeys(holding, "rel/x") | {"MLTRAIL_API_KEY": "rel/x"}
    resolve_environment(env, tmp_path)
    assert all(env[name] == str(tmp_path / "rel/x") for name in holding), env
    assert env["MLTRAIL_API_KEY"] == "rel/x"
    env = {"MLTRAIL_TELEMETRY__MLFLOW_URI": "sqlite:///m.db", "MLTRAIL_IMAGE_MODEL": "runs:/r/m"}
    resolve_environment(env, tmp_path)
    assert env == {
        "MLTRAIL_TELEMETRY__MLFLOW_URI": f"sqlite:///{tmp_path}/m.db",
        "MLTRAIL_IMAGE_MODEL": "runs:/r/m",
    }


def _default(var: Variable) -> str:
    if var.default is None:
        return "-"
    shown = json.dumps(var.default) if isinstance(var.default, list | bool) else str(var.default)
    return f"`{shown}`"


def tables() -> dict[str, str]:
    """The tables the docs hold, rendered from the declarations."""
    rows: dict[type[BaseModel], list[str]] = {Environment: [], ServeSettingsBase: []}
    for var in variables().values():
        if var.model is Environment:
            rows[Environment].append(f"| `{var.name}` | {_default(var)} | {var.doc} |")
        else:
            cells = f"`{var.name}` | `{var.key}` | {_default(var)} | {var.doc}"
            rows[ServeSettingsBase].append(f"| {cells} |")
    return {
        "README.md": "| variable | default | what |\n| --- | --- | --- |\n"
        + "\n".join(rows[Environment]),
        "docs/serving.md": "| variable | key | default | what |\n| --- | --- | --- | --- |\n"
        + "\n".join(rows[ServeSettingsBase]),
    }


@pytest.mark.parametrize("doc", ["README.md", "docs/serving.md"])
def test_the_docs_list_the_variables_as_declared(doc: str) -> None:
    table = tables()[doc]
    assert table in (REPO / doc).read_text(), f"{doc} should hold this table:\n{table}"


if __name__ == "__main__":
    for doc, table in tables().items():
        print(f"{doc}:\n\n{table}\n")


def test_the_mirror_name_the_help_uses_is_the_declared_one() -> None:
    from mltrail.paths import MIRROR_ENV

    assert env_name(Environment, "data_mirror") == MIRROR_ENV
