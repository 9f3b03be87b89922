"""Fixtures shared by the core test directories.

``image`` uses whatever ``registry`` fixture the requesting directory defines,
so each directory keeps its own set of plugins.
"""

from __future__ import annotations

import pytest

from arctern.block.image import create_image


@pytest.fixture
def image(tmp_path, registry) -> str:
    """A new 1 MiB raw image, created through the directory's registry."""
    path = str(tmp_path / "disk.raw")
    create_image(path, "raw", 1 << 20, registry=registry)
    return path
