"""One request at a time per image: the caches and the allocator are shared state.

QEMU's qcow2 driver holds its ``s->lock`` around metadata work for the same
reason. Devices, tools and the migration code may call a driver from more than
one thread; requests on one image then take turns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def serialized(method: F) -> F:
    """Run ``method`` holding the driver's re-entrant ``_lock``."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]
