"""The package's place: below serve and monitor (it imports neither), and its public API."""

from __future__ import annotations

import ast
from pathlib import Path

import mltrail.telemetry
from tests.conftest import REPO

PACKAGE = REPO / "src" / "mltrail" / "telemetry"
ALLOWED = {"errors", "fsio", "config", "paths", "settings", "telemetry", "tracking"}
"""What it may import from mltrail (tracking: the W&B sink keeps W&B's files in place)."""


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("mltrail.")}


def test_telemetry_imports_nothing_above_it() -> None:
    climbing = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in PACKAGE.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[1] not in ALLOWED
    }
    assert not climbing, sorted(climbing)


def test_the_public_api() -> None:
    public = "Capture Counters DEFAULT_STORE Feedback Filter Labelled Latency Prediction Record"
    public += " STORE_ENV Sink Telemetry TelemetrySettings TelemetryStore TimeBucket Traffic"
    public += " VersionLatency Window build_sinks default_store"
    public += " open_store read_labelled read_window store_from_env store_kinds"
    assert sorted(mltrail.telemetry.__all__) == public.split()
    assert all(hasattr(mltrail.telemetry, name) for name in mltrail.telemetry.__all__)
