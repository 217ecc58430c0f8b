"""The pointer file: one kind -> source mapping, written atomically, refused when corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mltrail.contracts.pointer import Pointer, PointerError
from mltrail.contracts.tasks import KINDS


def test_the_pointer_has_a_key_per_server_kind() -> None:
    assert tuple(Pointer.model_fields) == KINDS


def test_write_then_read(tmp_path: Path) -> None:
    path = tmp_path / "releases" / "serving.json"
    Pointer().with_source("image", "/r/cifar10/a").write(path)
    assert json.loads(path.read_text()) == {"image": "/r/cifar10/a"}  # no null for text
    pointer = Pointer.read(path).with_source("text", "/r/text/b")
    pointer.write(path)
    assert Pointer.read(path) == Pointer(text="/r/text/b", image="/r/cifar10/a")
    assert pointer.sources() == {"text": "/r/text/b", "image": "/r/cifar10/a"}
    assert [p.name for p in path.parent.iterdir()] == ["serving.json"]  # no temporary left


def test_no_file_is_an_empty_pointer(tmp_path: Path) -> None:
    pointer = Pointer.read(tmp_path / "serving.json")
    assert pointer.sources() == {} and pointer.source("text") is None


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '"text"', '{"text": 3}', '{"image": ["a"]}', ""]
)
def test_a_corrupt_pointer_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "serving.json"
    path.write_text(text)
    with pytest.raises(PointerError, match="is not a serving pointer") as caught:
        Pointer.read(path)
    assert caught.value.hint is not None and "mltrail promote" in caught.value.hint


def test_keys_of_other_kinds_are_ignored(tmp_path: Path) -> None:
    """A pointer written by a newer mltrail with a kind more still serves this one."""
    path = tmp_path / "serving.json"
    path.write_text(json.dumps({"text": "/t", "audio": "/a", "image": None}))
    assert Pointer.read(path).sources() == {"text": "/t"}


def test_fill_takes_the_other_source_only_where_none_is_named() -> None:
    given = Pointer(text="/given/text")
    assert given.fill(Pointer(text="/p/text", image="/p/image")) == Pointer(
        text="/given/text", image="/p/image"
    )
    assert Pointer().fill(Pointer()) == Pointer()
