"""-d ITEMS and -D FILE of arctern-system: QEMU's debug log items, routed to loggers.

The CPU items (``in_asm``, ``cpu``, ``int``, ``exec``) are the loggers of
:mod:`arctern.cpu.trace`. Devices and CPUs report a guest's invalid or
unimplemented requests as warnings of their own loggers, which arctern-system
hides by default; ``guest_errors`` and ``unimp`` show them.
"""

from __future__ import annotations

import logging

from arctern.cpu import trace
from arctern.errors import UsageError

WARNING_ITEMS = {
    "guest_errors": "log when the guest does something invalid (eg accessing a "
    "non-existent register)",
    "unimp": "log unimplemented functionality",
}
LOG_ITEMS = {**trace.ITEMS, **WARNING_ITEMS}


def setup_debug_log(items: str | None, log_file: str | None) -> None:
    """Enable the ``-d`` items; with ``-D``, their records go to that file instead of stderr."""
    if not items:
        return
    chosen = [item for item in items.split(",") if item]
    unknown = [item for item in chosen if item not in LOG_ITEMS]
    if unknown:
        raise UsageError(f"-d {items}: unknown log item '{unknown[0]}' (-d help lists them)")
    trace.enable(chosen)
    handler = None
    if log_file:
        try:
            handler = logging.FileHandler(log_file, mode="w")
        except OSError as exc:
            raise UsageError(f"-D {log_file}: {exc.strerror}") from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        cpu_log = logging.getLogger("arctern.cpu")
        cpu_log.addHandler(handler)
        cpu_log.propagate = False
    if any(item in WARNING_ITEMS for item in chosen):
        root = logging.getLogger()
        root.setLevel(min(root.level, logging.WARNING))
        if handler is not None:
            root.handlers[:] = [handler]
