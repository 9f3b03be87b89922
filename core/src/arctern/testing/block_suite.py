"""The block-driver suite run by ``pytest --arctern-block-driver NAME``: one class per NAME.

A driver whose create options include ``backing_file`` gets the backing-chain
tests too.
"""

from __future__ import annotations

from arctern.errors import ArcternError
from arctern.testing.block import BackingChainConformance, BlockDriverConformance
from arctern.testing.pytest_plugin import requested_block_drivers


def _suite_for(name: str) -> type[BlockDriverConformance]:
    from arctern.plugins import default_registry

    try:
        options = default_registry().block_driver(name).create_options
    except ArcternError:
        options = {}  # unknown driver: every test will say so
    return BackingChainConformance if "backing_file" in options else BlockDriverConformance


for _name in requested_block_drivers():
    _class_name = "Test_" + "".join(c if c.isalnum() else "_" for c in _name)
    globals()[_class_name] = type(_class_name, (_suite_for(_name),), {"driver_name": _name})
