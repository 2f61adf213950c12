"""Packaging: one import name, every package folder listed, configs shipped as package data."""

from __future__ import annotations

from pathlib import Path

import tomllib

import mirprobe.config as C

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"mirprobe": "benchmark", "mirprobe.tasks": "tasks", "mirprobe.configs": "configs"}


def test_pyproject_lists_every_package_folder() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == MAPPED
    folders = {}
    for name, folder in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            folders[".".join((name, *rel))] = init.parent
    assert sorted(tool["packages"]) == sorted(folders), "pyproject's packages list is out of date"


def test_configs_found_through_the_package() -> None:
    assert (ROOT / "configs").resolve() == C.CONFIG_DIR
    assert {"quickstart", "marble"} <= set(C.available("runs"))


def test_speed_scripts_are_not_a_package() -> None:
    assert not (ROOT / "perf" / "__init__.py").exists()
    assert not (ROOT / "benchmarks").exists()
