"""The ``mltrail`` command: one module per verb (``mltrail.cli.<verb>``), each with typed
parameters; :mod:`mltrail.cli.app` builds the parser from their registry and runs one.

Paths come in as arguments (``dvc.yaml`` passes them), params from ``--params`` plus ``--set``.
"""

from mltrail.cli.app import build_parser, main
from mltrail.cli.lineage import LINEAGE_MISMATCH

__all__ = ["LINEAGE_MISMATCH", "build_parser", "main"]
