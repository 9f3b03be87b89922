"""Open options shared by every node of an image graph: cache mode, discard, detect-zeroes."""

from __future__ import annotations

from dataclasses import dataclass

from arctern.errors import UsageError


@dataclass(frozen=True)
class CacheMode:
    """QEMU's cache modes as the three flags they stand for.

    * ``direct``: bypass the host page cache (O_DIRECT);
    * ``no_flush``: flushes never reach the disk (cache=unsafe);
    * ``writeback``: the guest sees a volatile write cache; when False every
      write is flushed before it completes (writethrough, directsync).
    """

    name: str
    direct: bool
    no_flush: bool
    writeback: bool


CACHE_MODES = {
    mode.name: mode
    for mode in (
        CacheMode("writeback", direct=False, no_flush=False, writeback=True),
        CacheMode("none", direct=True, no_flush=False, writeback=True),
        CacheMode("writethrough", direct=False, no_flush=False, writeback=False),
        CacheMode("directsync", direct=True, no_flush=False, writeback=False),
        CacheMode("unsafe", direct=False, no_flush=True, writeback=True),
    )
}

DISCARD_MODES = ("ignore", "unmap")
DETECT_ZEROES_MODES = ("off", "on", "unmap")


def _choose(kind: str, value: str, allowed) -> str:
    if value not in allowed:
        raise UsageError(f"Invalid {kind} '{value}' (allowed: {', '.join(allowed)})")
    return value


def cache_mode(name: str) -> CacheMode:
    """The cache mode called ``name`` (``-t`` of qemu-img, ``cache=`` of -drive)."""
    return CACHE_MODES[_choose("cache mode", name, tuple(CACHE_MODES))]


def discard_mode(value: str) -> str:
    # QEMU also accepts the aliases "off" and "on".
    value = {"off": "ignore", "on": "unmap"}.get(value, value)
    return _choose("discard mode", value, DISCARD_MODES)


def detect_zeroes_mode(value: str) -> str:
    return _choose("detect-zeroes mode", value, DETECT_ZEROES_MODES)
