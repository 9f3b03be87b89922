"""Fixtures shared by the core test directories.

``image`` uses whatever ``registry`` fixture the requesting directory defines,
so each directory keeps its own set of plugins.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest

from arctern.block.image import create_image
from arctern.hookspecs import hookimpl
from arctern.plugins import Registry


@pytest.fixture
def image(tmp_path, registry) -> str:
    """A new 1 MiB raw image, created through the directory's registry."""
    path = str(tmp_path / "disk.raw")
    create_image(path, "raw", 1 << 20, registry=registry)
    return path


@pytest.fixture(name="add_target")
def add_target_fixture() -> Callable[[Registry, type, type], None]:
    """``add_target(registry, cpu_class, board_class)``: register a target plugin (named
    after the CPU model) that offers just that CPU model and that machine type."""

    def add(registry: Registry, cpu: type, board: type) -> None:
        plugin = types.SimpleNamespace(
            arctern_cpu_models=hookimpl(lambda: [cpu]),
            arctern_machine_types=hookimpl(lambda: [board]),
        )
        registry.register_plugin(plugin, kind="target", name=cpu.name)

    return add
