from __future__ import annotations

from pathlib import Path

import pytest

import mltrail
from mltrail.config import MIRROR_ENV, apply_overrides, load_params
from mltrail.errors import ParamsError
from tests.conftest import PARAMS


def test_repository_params_are_valid() -> None:
    params = load_params(PARAMS)
    assert params.text.source.url and params.text.source.url.endswith("aclImdb_v1.tar.gz")
    assert params.text.test_fraction == 0.2
    assert params.cifar10_section().source.sha256 is not None
    assert params.clean_models.keep == ()


def test_set_overrides_one_value_with_its_yaml_type() -> None:
    params = load_params(PARAMS, ["text.sample_rows=5000", "cifar10.train_size=null"])
    assert params.text.sample_rows == 5000
    assert params.cifar10_section().train_size is None


def test_set_can_fill_a_nested_list() -> None:
    params = load_params(PARAMS, ["clean_models.keep=[text/handmade]"])
    assert params.clean_models.keep == ("text/handmade",)


def test_unknown_key_is_an_error_naming_the_key_and_the_valid_ones() -> None:
    with pytest.raises(ParamsError) as info:
        load_params(PARAMS, ["text.sampel_rows=5000"])
    message = str(info.value)
    assert "text.sampel_rows: unknown key" in message
    assert "sample_rows" in message  # the valid keys are listed


def test_unknown_key_in_a_nested_section_lists_that_sections_keys(tmp_path: Path) -> None:
    with pytest.raises(ParamsError) as info:
        load_params(PARAMS, ["text.source.checksum=abc"])
    assert "text.source.checksum: unknown key" in str(info.value)
    assert "path_sha256" in str(info.value)


def test_wrong_type_is_an_error_naming_the_key() -> None:
    with pytest.raises(ParamsError) as info:
        load_params(PARAMS, ["text.sample_rows=many"])
    assert "text.sample_rows" in str(info.value)
    assert "'many'" in str(info.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("text.test_fraction=1.5", "text.test_fraction"),
        ("text.sample_rows=0", "text.sample_rows"),
        ("text.missing_labels=ignore", "text.missing_labels"),
        ("cifar10.source.sha256=not-a-hash", "cifar10.source.sha256"),
    ],
)
def test_out_of_range_values_are_refused(override: str, key: str) -> None:
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(PARAMS, [override])


def test_malformed_override_is_explained() -> None:
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        load_params(PARAMS, ["text.sample_rows"])


def test_override_through_a_value_is_refused() -> None:
    with pytest.raises(ParamsError, match=r"text\.seed is a value"):
        apply_overrides({"text": {"seed": 1}}, ["text.seed.x=2"])


def test_missing_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("cifar10:\n  source: {url: http://x/y.tar.gz}\n")
    with pytest.raises(ParamsError, match="text: required key is missing"):
        load_params(path)


def test_cifar10_section_is_optional_until_used(tmp_path: Path) -> None:
    """A text-only project (mltrail init) has no cifar10 section; asking for it says so."""
    path = tmp_path / "params.yaml"
    path.write_text("text:\n  source: {url: http://x/y.csv}\n")
    params = load_params(path)
    assert params.cifar10 is None and params.dataset("text") is params.text
    with pytest.raises(ParamsError, match="no cifar10 section"):
        params.cifar10_section()


def test_missing_or_unreadable_params_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


def test_source_needs_an_origin() -> None:
    with pytest.raises(ParamsError, match="at least one of url, path or mirror"):
        load_params(PARAMS, ["text.source={}"])


def test_mirror_comes_from_param_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, "/from/env")
    assert str(load_params(PARAMS).data.mirror_dir()) == "/from/env"
    assert str(load_params(PARAMS, ["data.mirror=/from/param"]).data.mirror_dir()) == "/from/param"
    monkeypatch.delenv(MIRROR_ENV)
    assert load_params(PARAMS).data.mirror_dir() is None


def test_public_api_is_small_and_pinned() -> None:
    assert sorted(mltrail.__all__) == [
        "DataError",
        "MltrailError",
        "Params",
        "ParamsError",
        "__version__",
        "load_params",
    ]
    assert all(hasattr(mltrail, name) for name in mltrail.__all__)  # Params on first use
    assert mltrail.load_params is load_params
