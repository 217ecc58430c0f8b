"""The contract of every verb, taken from the registry (``mltrail.cli.app.VERBS``): a verb
is tested by being registered.

Each one is documented, has a help that says something, and each command reads its options
as a frozen dataclass whose fields are exactly the parser's destinations, typed as argparse
fills them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mltrail.cli import build_parser, main
from mltrail.cli._common import Command, ParamsArgs
from mltrail.cli.app import PASSTHROUGH, VERBS
from tests.conftest import REPO

DOCUMENTED = [
    "prepare",
    "train",
    "lineage",
    "runs",
    "tracking",
    "clean",
    "bench",
    "serve",
    "dvc",
    "deploy",
    "monitor",
    "retrain",
    "promote",
    "params",
    "completion",
    "init",
]
"""The verbs, pinned: adding one means adding it here and to the README."""


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...], said: str
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    yield path, parser, said
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name), helps[name])


PARSERS = {path: (parser, said) for path, parser, said in _walk(build_parser(), (), "")}
COMMANDS = {
    path: parser
    for path, (parser, _) in PARSERS.items()
    if isinstance(parser.get_default("command"), Command)
}


def test_the_registered_verbs_are_the_documented_ones() -> None:
    assert [verb.NAME for verb in VERBS] == DOCUMENTED
    assert sorted(p[0] for p in PARSERS if len(p) == 1) == sorted(DOCUMENTED)
    readme = (REPO / "README.md").read_text()
    missing = [v for v in DOCUMENTED if not re.search(rf"\bmltrail {v}\b", readme)]
    assert not missing, f"not in README.md: {missing}"


@pytest.mark.parametrize("path", [p for p in PARSERS if p], ids=" ".join)
def test_every_verb_has_a_help_that_says_something(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    parser, said = PARSERS[path]
    assert said.strip() or (parser.description or "").strip()
    if path[0] in PASSTHROUGH:  # its --help is the other tool's
        return
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mltrail {' '.join(path)}")
    if isinstance(parser.get_default("command"), Command) and issubclass(
        parser.get_default("command").args, ParamsArgs
    ):
        assert "--params" in out and "--set KEY=VALUE" in out


def test_every_parser_runs_a_command_or_has_sub_commands() -> None:
    for path, (parser, _) in PARSERS.items():
        if path[:1] and path[0] in PASSTHROUGH:
            continue
        has_subs = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        assert has_subs != (path in COMMANDS), path


def _matches(hint: object, actions: list[argparse.Action]) -> bool:
    """Whether what argparse puts in a destination is what the field's type says."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = set(typing.get_args(hint)) if union else {hint}
    optional = type(None) in options
    options.discard(type(None))
    (kind,) = options
    first = actions[0]
    if optional != (all(a.default is None for a in actions) and not first.required):
        return False
    if typing.get_origin(kind) is typing.Literal:
        given = {a.const for a in actions} if first.const is not None else set(first.choices or ())
        return given == set(typing.get_args(kind))
    if typing.get_origin(kind) is Sequence:
        return isinstance(first, argparse._AppendAction)
    if kind is bool:
        return isinstance(first, argparse._StoreTrueAction)
    return first.type is (None if kind is str else kind) and not first.choices


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_reads_typed_fields_named_as_its_options(path: tuple[str, ...]) -> None:
    parser = COMMANDS[path]
    args = parser.get_default("command").args
    assert dataclasses.is_dataclass(args) and args.__dataclass_params__.frozen  # type: ignore[union-attr]
    hints = typing.get_type_hints(args)
    dests: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        if action.dest != "help":
            dests.setdefault(action.dest, []).append(action)
    assert set(hints) == set(dests), "every option a field, every field an option"
    wrong = {name: hint for name, hint in hints.items() if not _matches(hint, dests[name])}
    assert not wrong, f"fields typed otherwise than argparse fills them: {wrong}"


def test_paths_are_typed_as_paths_so_they_are_made_absolute(tmp_path: Path) -> None:
    """Fields typed Path are what ``absolute_arguments`` resolves (see mltrail.paths)."""
    from mltrail.cli._common import absolute_arguments
    from mltrail.cli.lineage import LineageArgs

    namespace = build_parser().parse_args(["lineage", "models/x"])
    absolute_arguments(namespace)
    args = LineageArgs.from_namespace(namespace)
    assert args.model_dir.is_absolute() and args.model_dir.parts[-2:] == ("models", "x")


def test_dvc_gets_its_arguments_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def dvc(argv: Sequence[str]) -> int:
        seen.append(list(argv))
        return 0

    monkeypatch.setattr("mltrail.data.remote.dvc", dvc)
    argv = ["push", "-r", "team", "--help", "--set", "x", "-v"]
    assert main(["dvc", *argv]) == 0
    assert seen == [argv]
