"""The prepared-data layout is what the prepare stages write and the train stages read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mltrail.contracts.layout import Labels
from mltrail.contracts.tasks import task_spec
from mltrail.errors import MltrailError


@pytest.mark.parametrize(("task", "fixture"), [("text", "text_data"), ("cifar10", "cifar_data")])
def test_prepare_writes_the_layout(task: str, fixture: str, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(fixture)
    layout = task_spec(task).prepared
    assert sorted(p.name for p in folder.iterdir()) == sorted([*layout.required, layout.profile])
    assert layout.missing(folder) == []
    assert layout.read_classes(folder)


def test_what_a_folder_lacks_and_a_bad_labels_file(tmp_path: Path) -> None:
    layout = task_spec("text").prepared
    assert layout.missing(tmp_path) == ["train.parquet", "test.parquet", "labels.json"]
    layout.write_classes(tmp_path, ["neg", "pos"])
    assert Labels.model_validate_json((tmp_path / "labels.json").read_text()).classes == [
        "neg", "pos",
    ]  # fmt: skip
    (tmp_path / "labels.json").write_text('{"classes": "neg"}')
    with pytest.raises(MltrailError, match="is not a prepared-data labels file"):
        layout.read_classes(tmp_path)
