"""``mltrail completion bash|zsh|tcsh``: a shell completion script (shtab) for every verb and
option the parser has."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from mltrail.cli._common import Args, set_command

NAME = "completion"

Shell = Literal["bash", "zsh", "tcsh"]


@dataclass(frozen=True, kw_only=True)
class CompletionArgs(Args):
    shell: Shell


def cmd_completion(args: CompletionArgs) -> int:
    import shtab

    # The whole parser, through the package: this module is one of the verbs app.py registers,
    # so importing app.py from here would be a cycle between siblings.
    from mltrail import cli

    parser = cli.build_parser()
    _complete_paths(parser, shtab.FILE)
    print(shtab.complete(parser, shell=args.shell), end="")
    return 0


def _complete_paths(parser: argparse.ArgumentParser, files: Any) -> None:
    """Let the shell complete file names wherever an argument is a path (shtab reads an
    action's ``complete`` attribute)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _complete_paths(sub, files)
        elif action.type is Path:
            action.complete = files  # type: ignore[attr-defined]


HELP = "print a shell completion script (bash, zsh, tcsh)"
DESCRIPTION = """Print the completion script for mltrail's verbs and options. Install it once,
e.g. bash: mltrail completion bash > ~/.local/share/bash-completion/completions/mltrail;
zsh: mltrail completion zsh > "${fpath[1]}/_mltrail"."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=get_args(Shell))
    set_command(parser, CompletionArgs, cmd_completion)
