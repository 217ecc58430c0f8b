"""What pyproject.toml promises: every package src/ imports is declared, in the right extra;
one supported Python range; the license file it names exists."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src" / "mltrail"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# A module imported at module level (not inside a function) is needed by everything that
# imports its module: it must be a core dependency or come with the extra its subpackage
# (or module) belongs to. Imports inside functions are optional features: any extra will do.
MODULE_EXTRAS = {
    "serve": {"serve"},
    "models/cnn": {"torch"},
    "tracking/mlflow_backend": {"mlflow"},
    "telemetry/stores/postgres": {"serve"},  # imported only by its builder, for postgresql://
}


def _name(requirement: str) -> tuple[str, list[str]]:
    """``"dvc[ssh]>=3.50,<4; marker"`` -> (``dvc``, [``ssh``]), the name normalised."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", requirement)
    assert match, requirement
    extras = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), extras


def _declared(requirements: list[str]) -> set[str]:
    """The distributions these requirements bring directly, with those of a requirement's
    own extras (``dvc[ssh]`` declares dvc-ssh, through dvc's ``ssh`` extra)."""
    names: set[str] = set()
    for requirement in requirements:
        name, extras = _name(requirement)
        names.add(name)
        for extra in extras:
            for sub in importlib.metadata.requires(name) or []:
                if re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", sub):
                    names.add(_name(sub)[0])
    return names


CORE = _declared(PYPROJECT["project"]["dependencies"])
EXTRAS = {k: _declared(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}


def _imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(top-level package, imported at module level) for each absolute import in ``path``,
    leaving out ``if TYPE_CHECKING:`` blocks (they never run)."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    module_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            yield name.partition(".")[0], id(node) in module_level


def _third_party() -> Iterator[tuple[str, str, bool]]:
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).with_suffix("").as_posix()
        for top, at_module_level in _imports(path):
            if top != "mltrail" and top not in sys.stdlib_module_names:
                yield module, top, at_module_level


@functools.cache
def _providers() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _distributions(top: str) -> set[str]:
    found = _providers().get(top)
    assert found, f"{top} is imported by src/ but no installed distribution provides it"
    return {re.sub(r"[-_.]+", "-", d).lower() for d in found}


def test_every_imported_package_is_declared_where_it_is_needed() -> None:
    problems = []
    for module, top, at_module_level in _third_party():
        dists = _distributions(top)
        if dists & CORE:
            continue
        extras = {name for name, declared in EXTRAS.items() if dists & declared}
        if not extras:
            problems.append(f"{module} imports {top} ({', '.join(sorted(dists))}): not declared")
            continue
        if at_module_level:
            wanted = next(
                (v for k, v in MODULE_EXTRAS.items() if module == k or module.startswith(k)),
                set(),
            )
            if not extras & wanted:
                where = " or ".join(["the core", *(f"[{e}]" for e in sorted(wanted))])
                problems.append(
                    f"{module} imports {top} at module level: declared only in "
                    f"[{', '.join(sorted(extras))}], not in {where}"
                )
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_check_sees_what_it_should() -> None:
    """The import walk itself: a lazy import counts, a TYPE_CHECKING one does not."""
    found = {(m, t) for m, t, _ in _third_party()}
    assert ("monitor/drift", "scipy") in found and ("release/promote", "httpx") in found
    assert ("cli/serve", "uvicorn") in found  # imported inside cmd_serve
    assert not any(t == "mltrail" or t in sys.stdlib_module_names for _, t in found)


def test_one_python_range_everywhere() -> None:
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == "3.11"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    setup = (REPO / "scripts" / "setup").read_text()
    assert "sys.version_info < (3, 11)" in setup and "Python >= 3.11" in setup
    readme = (REPO / "README.md").read_text()
    assert "Python >= 3.11" in readme
    assert not re.search(r"Python >= 3\.(?!11\b)\d+", readme + setup)
    pins = (REPO / "constraints.txt").read_text()
    assert "Python 3.11" in pins


def test_no_cap_without_a_reason() -> None:
    """Every upper bound carries a comment saying why; pandas has none left to carry."""
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    capped = [line for line in lines if re.search(r'"[A-Za-z0-9_.\[\]-]+[^"]*<[^=]', line)]
    assert capped and all("#" in line for line in capped), capped
    assert not any('"pandas' in line for line in capped)


def test_the_license_file_is_the_apache_license() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and text.count("\n") == 202
