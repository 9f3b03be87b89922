"""BlockBackend: what devices and tools use to reach an image.

It checks every request against the device size, applies the per-device
settings (detect-zeroes, writethrough), and keeps the list of open images of
the process for :func:`activate_all` / :func:`inactivate_all`.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Callable
from typing import Any

from arctern.block.driver import BlockStatus
from arctern.block.node import BlockNode, as_byte_view
from arctern.errors import OutOfRangeError, UsageError

_ZERO_CHUNK = bytes(64 * 1024)

#: The counters of query-blockstats, by kind of request: (bytes, operations, total time).
_READ = ("rd_bytes", "rd_operations", "rd_total_time_ns")
_WRITE = ("wr_bytes", "wr_operations", "wr_total_time_ns")
_UNMAP = ("unmap_bytes", "unmap_operations", "unmap_total_time_ns")
_FLUSH = (None, "flush_operations", "flush_total_time_ns")
STAT_KEYS = tuple(key for keys in (_READ, _WRITE, _UNMAP, _FLUSH) for key in keys if key)

_open_backends: weakref.WeakValueDictionary[int, BlockBackend] = weakref.WeakValueDictionary()
_sequence = itertools.count()


def _is_zero(data: memoryview) -> bool:
    """Whether ``data`` is all zero bytes, compared a chunk at a time by memcmp.

    (Comparing a memoryview to bytes goes item by item; bytes to bytes does not.)
    """
    step = len(_ZERO_CHUNK)
    for start in range(0, len(data), step):
        chunk = data[start : start + step].tobytes()
        if chunk != _ZERO_CHUNK[: len(chunk)]:
            return False
    return True


class BlockBackend:
    """A bounds-checked handle on the root node of an open image; a context manager."""

    def __init__(self, node: BlockNode, *, detect_zeroes: str = "off") -> None:
        self.node = node
        self.detect_zeroes = detect_zeroes
        #: QEMU's query-blockstats counters for the requests of this backend.
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        #: Called after :meth:`truncate` changed the size (QEMU's resize_cb of the device
        #: model: virtio-blk tells the guest its new capacity).
        self.resize_listeners: list[Callable[[], None]] = []
        self._closed = False
        self._key = next(_sequence)
        _open_backends[self._key] = self

    def __repr__(self) -> str:
        return f"<BlockBackend {self.node!r}>"

    def __enter__(self) -> BlockBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- properties ----------------------------------------------------------

    @property
    def length(self) -> int:
        return self.node.getlength()

    @property
    def read_only(self) -> bool:
        return self.node.read_only

    @property
    def active(self) -> bool:
        return self.node.active

    @property
    def filename(self) -> str:
        return self.node.filename

    @property
    def closed(self) -> bool:
        return self._closed

    # --- I/O -------------------------------------------------------------

    def _check_range(self, what: str, offset: int, length: int) -> None:
        size = self.length
        if offset < 0 or length < 0 or offset + length > size:
            raise OutOfRangeError(
                f"{what} of {length} bytes at offset {offset} is out of range for "
                f"'{self.node.filename}' (size {size})"
            )

    def _account(self, keys: tuple, nbytes: int, started: int) -> None:
        stats = self.stats
        if keys[0] is not None:
            stats[keys[0]] += nbytes
        stats[keys[1]] += 1
        stats[keys[2]] += time.perf_counter_ns() - started

    def pread(self, offset: int, length: int) -> bytes:
        self._check_range("read", offset, length)  # before allocating anything
        buf = bytearray(length)
        self.preadinto(offset, buf)
        return bytes(buf)

    def preadinto(self, offset: int, buf: Any) -> None:
        """Fill ``buf`` (any writable buffer) with the bytes at ``offset``."""
        started = time.perf_counter_ns()
        view = as_byte_view(buf)
        self._check_range("read", offset, len(view))
        self.node.pread(offset, view)
        self._account(_READ, len(view), started)

    def pwrite(self, offset: int, data: Any) -> None:
        started = time.perf_counter_ns()
        view = as_byte_view(data)
        self.node.check_writable()
        self._check_range("write", offset, len(view))
        if self.detect_zeroes != "off" and _is_zero(view):
            self.node.pwrite_zeroes(offset, len(view), may_unmap=self.detect_zeroes == "unmap")
        else:
            self.node.pwrite(offset, view)
        self._write_through()
        self._account(_WRITE, len(view), started)

    def copy_range(self, offset: int, length: int, target: BlockBackend, target_offset: int):
        """Copy ``length`` bytes at ``offset`` to ``target`` at ``target_offset``, without
        passing them through Python where both images' drivers can offload the copy
        (``qemu-img convert -C``)."""
        started = time.perf_counter_ns()
        self._check_range("read", offset, length)
        target.node.check_writable()
        target._check_range("write", target_offset, length)
        self.node.copy_range_from(offset, length, target.node, target_offset)
        target._write_through()
        self._account(_READ, length, started)
        target._account(_WRITE, length, started)

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        started = time.perf_counter_ns()
        self.node.check_writable()
        self._check_range("write zeroes", offset, length)
        self.node.pwrite_zeroes(offset, length, may_unmap=may_unmap)
        self._write_through()
        self._account(_WRITE, length, started)

    def pdiscard(self, offset: int, length: int) -> None:
        started = time.perf_counter_ns()
        self.node.check_writable()
        self._check_range("discard", offset, length)
        self.node.pdiscard(offset, length)
        self._account(_UNMAP, length, started)

    def _write_through(self) -> None:
        if not self.node.cache.writeback:
            self.node.flush()

    def flush(self) -> None:
        started = time.perf_counter_ns()
        self.node.flush()
        self._account(_FLUSH, 0, started)

    def truncate(self, size: int, preallocation: str = "off") -> None:
        if size < 0:
            raise UsageError(f"Invalid size {size} for '{self.node.filename}'")
        self.node.truncate(size, preallocation)
        for listener in list(self.resize_listeners):
            listener()

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """Status of the bytes from ``offset``; ``length`` is clamped to the device end."""
        size = self.length
        if offset < 0 or offset >= size or length <= 0:
            raise OutOfRangeError(
                f"block status at offset {offset} is out of range for "
                f"'{self.node.filename}' (size {size})"
            )
        return self.node.block_status(offset, min(length, size - offset))

    # --- activation and life cycle -------------------------------------------

    def activate(self) -> None:
        self.node.activate()

    def inactivate(self) -> None:
        self.node.inactivate()

    def close(self) -> None:
        """Close the image; harmless when already closed."""
        if self._closed:
            return
        self._closed = True
        _open_backends.pop(self._key, None)
        self.node.close()


def open_backends() -> list[BlockBackend]:
    """Every open BlockBackend of this process, oldest first."""
    return [backend for _key, backend in sorted(_open_backends.items())]


def activate_all() -> None:
    """Activate every open image (each one children first); stops at the first failure."""
    for backend in open_backends():
        backend.activate()


def inactivate_all() -> None:
    """Inactivate every open image (each one parents first); stops at the first failure."""
    for backend in open_backends():
        backend.inactivate()
