"""``mltrail lineage MODEL_DIR``: a model's trail from commit to tracker runs, and a check of
every file its manifest hashes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mltrail.cli._common import Args, set_command

LINEAGE_MISMATCH = 2
"""``mltrail lineage`` exit status when a file the manifest hashes is missing or differs."""

NAME = "lineage"


@dataclass(frozen=True, kw_only=True)
class LineageArgs(Args):
    model_dir: Path
    json: bool


def cmd_lineage(args: LineageArgs) -> int:
    import json

    from mltrail.tracking.lineage import lineage, render

    trail = lineage(args.model_dir)
    print(json.dumps(trail, indent=2) if args.json else render(trail))
    return 0 if trail["check"]["ok"] else LINEAGE_MISMATCH


HELP = "print a model's trail: commit to tracker runs; check its files"
DESCRIPTION = f"""Print the manifest's chain (commit, params, data, model, tracker runs,
promotions) and check every file of the model folder the manifest hashes (the model, its
ONNX copy, its monitoring reference). Exit status: 0 when they all match,
{LINEAGE_MISMATCH} when one is missing or differs, 1 on an error (no manifest)."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "--json", action="store_true", help="print the manifest and the check as JSON"
    )
    set_command(parser, LineageArgs, cmd_lineage)
