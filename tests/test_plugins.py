"""One registration path: entry points, the built-ins included; two claims of one name fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from mirprobe.errors import UserError
from mirprobe.models import load_model
from mirprobe.plugins import MODELS, TASKS, available_kinds, available_tasks, get_task
from tests.plugin_registry import install_entry_points

ROOT = Path(__file__).resolve().parents[1]


def declared(group: str) -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][group]


def test_builtins_are_the_packages_own_entry_points() -> None:
    assert available_tasks() == declared(TASKS)
    assert available_kinds() == declared(MODELS)


def test_a_plugin_package_adds_a_task_and_a_model_kind(monkeypatch, tmp_path: Path) -> None:
    install_entry_points(monkeypatch, tmp_path, {
        TASKS: {"genre2": "mirprobe.tasks.genre:GenreTask"},
        MODELS: {"random2": "mirprobe.models.random:RandomExtractor"}})
    assert set(available_tasks()) == set(declared(TASKS)) | {"genre2"}
    assert get_task("genre2", classes=["a", "b"]).classes == ["a", "b"]
    assert load_model("x", kind="random2", seed=1).num_layers == load_model("random").num_layers


def test_two_packages_claiming_one_name_is_an_error(monkeypatch, tmp_path: Path) -> None:
    install_entry_points(monkeypatch, tmp_path, {TASKS: {"key": "othermod:OtherKey"}},
                         dist="other-plugins")
    with pytest.raises(UserError, match="two installed packages register 'key'") as e:
        get_task("genre")
    assert "mirprobe (mirprobe.tasks.key:KeyTask)" in str(e.value)
    assert "other-plugins (othermod:OtherKey)" in str(e.value)


def test_unknown_names_list_what_is_registered() -> None:
    with pytest.raises(UserError, match="unknown task plugin 'nope'; available: .*genre"):
        get_task("nope")
    with pytest.raises(UserError, match="unknown kind 'nope'"):
        load_model("x", kind="nope")
