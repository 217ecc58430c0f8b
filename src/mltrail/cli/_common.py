"""What the verbs share: typed arguments built from argparse's namespace in one place, the
``--params/--set`` parent parser, command-line paths made absolute, and errors as the user
sees them.

Imported by every verb module when the parser is built, so only the standard library and
``mltrail.errors``/``mltrail.paths`` at module level: a verb imports what it runs inside its
handler.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Self, TypeAlias, TypeVar

from mltrail.errors import MltrailError

if TYPE_CHECKING:
    from mltrail.config import Params

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction
"""What ``add_subparsers`` returns: a verb's ``register`` adds its parser to it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Args:
    """A verb's parameters, typed: one frozen dataclass per handler, its fields named as the
    parser's destinations."""

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> Self:
        """The one place a namespace is read: each field from the attribute of its name."""
        return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParamsArgs(Args):
    """The parameters of a verb that reads params.yaml (see :func:`params_parser`)."""

    params: Path
    overrides: Sequence[str]

    def load_params(self) -> Params:
        from mltrail.config import load_params

        return load_params(self.params, self.overrides)


def add_params(parser: argparse.ArgumentParser) -> None:
    """The arguments of :class:`ParamsArgs`: ``--params FILE`` and repeatable ``--set``."""
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override one param for this run, e.g. --set text.sample_rows=5000 (repeatable)",
    )


def params_parser() -> argparse.ArgumentParser:
    """A parent parser holding :func:`add_params`' arguments, for sub-commands that share them."""
    parent = argparse.ArgumentParser(add_help=False)
    add_params(parent)
    return parent


A = TypeVar("A", bound=Args)


@dataclasses.dataclass(frozen=True)
class Command(Generic[A]):
    """What a parser runs: the type of its arguments and the handler that takes them."""

    args: type[A]
    handler: Callable[[A], int]

    def __call__(self, namespace: argparse.Namespace) -> int:
        return self.handler(self.args.from_namespace(namespace))


def set_command(
    parser: argparse.ArgumentParser, args: type[A], handler: Callable[[A], int]
) -> None:
    """Make ``handler`` what ``parser`` runs, with its namespace read as ``args``."""
    parser.set_defaults(command=Command(args, handler))


def absolute_arguments(namespace: argparse.Namespace) -> None:
    """Every path given on the command line, made absolute against the working directory
    (see mltrail.paths): the stores and folders a command hands to other processes."""
    from mltrail.paths import absolute, absolute_store

    for name, value in vars(namespace).items():
        if isinstance(value, Path):
            setattr(namespace, name, absolute(value))
    if getattr(namespace, "store", None):
        namespace.store = absolute_store(namespace.store)


def telemetry_store(store: str | None) -> str:
    """--store, else the default store (all absolute by now; see mltrail.telemetry)."""
    from mltrail.telemetry import default_store

    return str(store or default_store())


def admin_key() -> str | None:
    """The key a client sends to a server's /admin/* routes: ``$MLTRAIL_ADMIN_API_KEY``, else
    ``$MLTRAIL_API_KEY`` (the server's own fallback), else none."""
    import os

    return os.environ.get("MLTRAIL_ADMIN_API_KEY") or os.environ.get("MLTRAIL_API_KEY") or None


def report(error: MltrailError) -> int:
    """An error the user can act on: one message, its hint, no traceback; exit status 1."""
    print(f"mltrail: error: {error}", file=sys.stderr)
    return 1
