"""The floor plan, kept true: dvc.yaml lists for each stage exactly the mltrail modules its code
imports (so that a stage re-runs when its code changes), and docs/architecture.md names each
stage's module. The layer contract itself (an import never climbs; no cycles) is import-linter's,
configured in pyproject.toml and run by scripts/test as ``lint-imports``."""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
import yaml

import mltrail
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
STAGES: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()


def _layers() -> list[set[str]]:
    """The layers contract's layers, highest first, as sets of module names."""
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    return [{f"mltrail.{name.strip()}" for name in re.split(r"[|:]", layer)} for layer in layers]


# Layer 1 (errors, fsio, config, paths, settings) and the package's __init__ (which imports
# only layer 1) are plumbing every stage imports: listed, they would re-run every stage on any
# change there. The params config.py validates reach dvc.yaml key by key instead.
NOT_LISTED = _layers()[-1] | {"mltrail"}


@functools.cache
def _graph() -> grimp.ImportGraph:
    # The graph of the mltrail that is imported: it must be this checkout's.
    assert Path(mltrail.__file__).resolve().is_relative_to(REPO / "src"), mltrail.__file__
    return grimp.build_graph("mltrail", cache_dir=None)


def _file(module: str) -> str:
    path = Path("src", *module.split("."))
    if (REPO / path).is_dir():
        return (path / "__init__.py").as_posix()
    return path.with_suffix(".py").as_posix()


def _code(stage: dict[str, Any]) -> list[str]:
    return [d for d in stage.get("deps", []) if re.fullmatch(r"src/mltrail/.+\.py", d)]


def test_the_layers_name_every_module_once() -> None:
    """The contract is exhaustive (lint-imports refuses a module it does not place); here:
    no module is placed twice, and the lowest layer is the one this file leaves out."""
    layers = _layers()
    names = [name for layer in layers for name in layer]
    assert len(names) == len(set(names))
    layer1 = {"mltrail.errors", "mltrail.fsio", "mltrail.config", "mltrail.paths"}
    assert layer1 | {"mltrail.settings"} == layers[-1]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_lists_exactly_the_modules_its_code_imports(name: str) -> None:
    stage = STAGES[name]
    code = _code(stage)
    if not code:  # a stage that runs all of mltrail (the bench) depends on all of it
        assert "src/mltrail" in stage["deps"], f"{name}: no module and not src/mltrail"
        return
    entry = code[0].removeprefix("src/").removesuffix(".py").replace("/", ".")
    assert entry.startswith("mltrail.stages."), f"{name}: its first src/ dependency is {code[0]}"
    imported = (_graph().find_upstream_modules(entry) | {entry}) - NOT_LISTED
    wanted = {_file(module) for module in imported}
    missing, extra = sorted(wanted - set(code)), sorted(set(code) - wanted)
    assert not missing and not extra, (
        f"dvc.yaml, stage {name} (module {entry}): add {missing}, remove {extra}"
    )
    assert len(code) == len(set(code)), f"{name}: a dependency is listed twice"


@pytest.mark.parametrize("name", sorted(n for n, s in STAGES.items() if _code(s)))
def test_the_architecture_doc_maps_each_stage_to_its_module(name: str) -> None:
    module = _code(STAGES[name])[0].removeprefix("src/mltrail/")
    rows = [line for line in ARCHITECTURE.splitlines() if line.startswith("|")]
    assert any(name in row and module in row for row in rows), (
        f"docs/architecture.md: no table row names stage {name} with {module}"
    )
