"""``mltrail dvc ARGS...``: DVC's own command line, its arguments untouched, with SSH host keys
checked (see mltrail.data.remote). Not parsed here: ``main`` hands everything after ``dvc``
to :func:`passthrough`; the parser only lists the verb (help, completion)."""

from __future__ import annotations

from collections.abc import Sequence

from mltrail.cli._common import Subparsers

NAME = "dvc"


def passthrough(argv: Sequence[str]) -> int:
    from mltrail.data.remote import dvc

    return dvc(argv)


def register(verbs: Subparsers) -> None:
    verbs.add_parser(
        NAME,
        help="run DVC with SSH host keys checked (dvc-ssh accepts any host key otherwise)",
        description="""mltrail dvc ARGS... is `dvc ARGS...` with SSH remotes verifying the server
        against ~/.ssh/known_hosts (or $MLTRAIL_KNOWN_HOSTS).""",
        add_help=False,
    )
