"""Image activation at the migration hand-over (see DESIGN.md, "Live migration").

Exactly one side may have a machine's images active at any time: the
source flushes and inactivates them before it sends end-of-stream, and the
destination activates them (each format driver's ``invalidate_cache``
re-reads metadata written by the source) only after it loaded everything.
"""

from __future__ import annotations

import logging
from typing import Any

from arctern.errors import ArcternError, MigrationError

log = logging.getLogger(__name__)


def _why(exc: Exception) -> str:
    """An ArcternError says it all; anything else is a driver bug, logged with its traceback."""
    if isinstance(exc, ArcternError):
        return str(exc)
    log.error("block driver failed during the hand-over", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _backends(machine: Any) -> list[tuple[str, Any]]:
    return sorted(getattr(machine, "drives", {}).items())


def inactivate_images(machine: Any) -> None:
    """Flush every drive and make it inactive; MigrationError names the drive that failed."""
    for name, backend in _backends(machine):
        try:
            if backend.active:
                backend.flush()
            backend.inactivate()
        except Exception as exc:
            raise MigrationError(f"cannot inactivate drive '{name}': {_why(exc)}") from None
        log.debug("drive %s inactivated", name)


def activate_images(machine: Any) -> None:
    """Activate every drive (drivers drop and re-read cached metadata, locks are taken)."""
    for name, backend in _backends(machine):
        try:
            backend.activate()
        except Exception as exc:
            raise MigrationError(f"cannot activate drive '{name}': {_why(exc)}") from None
        log.debug("drive %s activated", name)
