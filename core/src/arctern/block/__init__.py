"""The generic block layer: image graphs, activation, locking, BlockBackend.

Public API::

    create_image(filename, fmt, size, options=None, *, registry=None)
    open_image(filename, *, fmt=None, read_only=False, active=True, ...) -> BlockBackend
    activate_all(); inactivate_all()

Drivers implement :class:`arctern.block.driver.BlockDriver`.
"""

from arctern.block.backend import BlockBackend, activate_all, inactivate_all, open_backends
from arctern.block.driver import BlockDriver, BlockStatus
from arctern.block.image import create_image, open_image
from arctern.block.node import BlockNode

__all__ = [
    "BlockBackend",
    "BlockDriver",
    "BlockNode",
    "BlockStatus",
    "activate_all",
    "create_image",
    "inactivate_all",
    "open_backends",
    "open_image",
]
