"""The root parser, built from the registry of verbs, and ``main``: the only place that
reads argv.

Each verb is a module of this package with ``NAME`` and ``register(subparsers)``; its handler
takes a frozen dataclass of typed parameters. Building the parser imports only those modules
(the standard library, ``mltrail.errors``, ``mltrail.paths``): a handler imports what it runs,
so ``mltrail --help`` starts without pydantic, pandas or any tracker.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from mltrail import __version__
from mltrail.cli import (
    bench,
    clean,
    completion,
    deploy,
    dvc,
    init,
    lineage,
    monitor,
    params,
    prepare,
    promote,
    retrain,
    runs,
    serve,
    tracking,
    train,
)
from mltrail.cli._common import absolute_arguments, report
from mltrail.errors import MltrailError


class Verb(Protocol):
    """A verb module: its name on the command line, its one-line ``HELP`` (and, optionally, a
    longer ``DESCRIPTION``), and what it adds to its parser, which :func:`build_parser` makes
    so that every verb's parser is made the same way."""

    # Read-only members: a module's constants satisfy them (mutable ones would need exact types).
    @property
    def NAME(self) -> str: ...
    @property
    def HELP(self) -> str: ...

    def register(self, parser: argparse.ArgumentParser) -> None: ...


VERBS: tuple[Verb, ...] = (
    prepare,
    train,
    lineage,
    runs,
    tracking,
    clean,
    bench,
    serve,
    dvc,
    deploy,
    monitor,
    retrain,
    promote,
    params,
    completion,
    init,
)
"""Every verb, in the order ``mltrail --help`` lists them."""

PASSTHROUGH: dict[str, Callable[[Sequence[str]], int]] = {dvc.NAME: dvc.passthrough}
"""Verbs whose arguments are another tool's, handed over unparsed."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mltrail",
        description="""An end-to-end MLOps pipeline: versioned data, tracked training, serving,
        monitoring.""",
    )
    parser.add_argument("--version", action="version", version=f"mltrail {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        parser_of_verb = verbs.add_parser(
            verb.NAME,
            help=verb.HELP,
            description=getattr(verb, "DESCRIPTION", None),
            add_help=verb.NAME not in PASSTHROUGH,  # their --help is the other tool's
        )
        verb.register(parser_of_verb)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mltrail.paths import resolve_environment

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in PASSTHROUGH:  # their own arguments, untouched
        resolve_environment()
        try:
            return PASSTHROUGH[argv[0]](argv[1:])
        except MltrailError as exc:
            return report(exc)
    namespace = build_parser().parse_args(argv)  # --help and usage errors exit here, light
    # Before anything runs in another folder or process: relative paths in MLTRAIL_* mean
    # "relative to where the command was typed" (mltrail.paths).
    resolve_environment()
    absolute_arguments(namespace)
    import logging  # here, not at the top: --help and usage errors exit before this

    logging.basicConfig(
        level=logging.DEBUG if namespace.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    command: Callable[[argparse.Namespace], int] = namespace.command
    try:
        return command(namespace)
    except MltrailError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("mltrail: interrupted; no partial outputs were kept", file=sys.stderr)
        return 130
