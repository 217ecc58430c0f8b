"""``mltrail dvc ARGS...``: DVC's own command line, its arguments untouched, with SSH host keys
checked (see mltrail.data.remote). Not parsed here: ``main`` hands everything after ``dvc``
to :func:`passthrough`; the parser only lists the verb (help, completion)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

NAME = "dvc"


def passthrough(argv: Sequence[str]) -> int:
    from mltrail.data.remote import dvc

    return dvc(argv)


HELP = "run DVC with SSH host keys checked (dvc-ssh accepts any host key otherwise)"
DESCRIPTION = """mltrail dvc ARGS... is `dvc ARGS...` with SSH remotes verifying the server
against ~/.ssh/known_hosts (or $MLTRAIL_KNOWN_HOSTS)."""


def register(parser: argparse.ArgumentParser) -> None:
    """Nothing to add: the arguments are DVC's, handed over unparsed (app.PASSTHROUGH)."""
