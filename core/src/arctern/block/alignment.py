"""Requests of any alignment on drivers that need aligned ones (O_DIRECT files).

A driver that declares ``request_alignment > 1`` only ever sees offsets,
lengths and buffer addresses that are multiples of it. Requests that already
are aligned (e.g. into mmap'ed memory) go straight through; the others go
through a page-aligned bounce buffer (an anonymous mmap), and writes that do
not cover whole blocks read the partial head and tail blocks first
(read-modify-write).
"""

from __future__ import annotations

import math
import mmap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arctern.block.driver import BlockDriver


def _bounds(offset: int, length: int, align: int) -> tuple[int, int]:
    start = offset - offset % align
    end = -(-(offset + length) // align) * align
    return start, end


class BounceBuffers:
    """Page-aligned scratch memory, kept between requests (faulting pages in costs more
    than the copy). A request larger than ``keep`` bytes, or one made while another
    thread uses the kept memory, gets memory of its own."""

    def __init__(self, keep: int = 4 << 20) -> None:
        self.keep = keep
        self._area: mmap.mmap | None = None
        self._in_use = threading.Lock()

    @contextmanager
    def get(self, size: int) -> Iterator[memoryview]:
        if size > self.keep or not self._in_use.acquire(blocking=False):
            area = mmap.mmap(-1, max(size, 1))
            try:
                with memoryview(area) as whole, whole[:size] as view:
                    yield view
            finally:
                area.close()
            return
        try:
            if self._area is None or len(self._area) < size:
                if self._area is not None:
                    self._area.close()
                self._area = mmap.mmap(-1, max(size, 1))
            with memoryview(self._area) as whole, whole[:size] as view:
                yield view
        finally:
            self._in_use.release()

    def close(self) -> None:
        if self._area is not None:
            self._area.close()
            self._area = None


def _is_aligned(offset: int, buf: memoryview, align: int) -> bool:
    """Whether the request can go to the driver as it is: offset, length and address aligned."""
    if not len(buf):
        return True
    if offset % align or len(buf) % align or buf.readonly or not buf.contiguous:
        return False
    import ctypes  # here, not at start-up: only O_DIRECT nodes need addresses

    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return address % align == 0


class RangeLocks:
    """Byte ranges being written; a write waits for the overlapping ones (QEMU's
    serialising requests), so that two read-modify-writes of one block, or one
    and a plain write, cannot lose either's data."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held: list[tuple[int, float]] = []

    @contextmanager
    def hold(self, start: int, end: float) -> Iterator[None]:
        entry = (start, end)
        with self._changed:
            while any(s < end and start < e for s, e in self._held):
                self._changed.wait()
            self._held.append(entry)
        try:
            yield
        finally:
            with self._changed:
                self._held.remove(entry)
                self._changed.notify_all()


class Aligner:
    """Aligned I/O for one node: its bounce memory and its in-flight writes."""

    def __init__(self) -> None:
        self.bounces = BounceBuffers()
        self.writes = RangeLocks()

    def pread(self, driver: BlockDriver, offset: int, buf: memoryview, align: int) -> None:
        """``driver.pread`` of ``buf`` at ``offset`` through aligned requests."""
        if _is_aligned(offset, buf, align):
            driver.pread(offset, buf)
            return
        start, end = _bounds(offset, len(buf), align)
        with self.bounces.get(end - start) as bounce:
            driver.pread(start, bounce)
            buf[:] = bounce[offset - start : offset - start + len(buf)]

    def pwrite(self, driver: BlockDriver, offset: int, data: memoryview, align: int) -> None:
        """``driver.pwrite`` of ``data`` at ``offset``, read-modify-writing partial blocks.

        When the last block sticks out past the end of a protocol node, the
        padding would grow the file; it is cut back to where the data ends
        (holding every write beyond, so that none is cut off).
        """
        if _is_aligned(offset, data, align):
            with self.writes.hold(offset, offset + len(data)):
                driver.pwrite(offset, data)
            return
        length = len(data)
        start, end = _bounds(offset, length, align)
        old_length = driver.getlength() if driver.protocol else None
        grows = old_length is not None and end > old_length
        with self.writes.hold(start, math.inf if grows else end):
            with self.bounces.get(end - start) as bounce:
                if offset != start:
                    driver.pread(start, bounce[:align])
                if (offset + length) % align and (end - align >= start + align or offset == start):
                    driver.pread(end - align, bounce[-align:])
                bounce[offset - start : offset - start + length] = data
                driver.pwrite(start, bounce)
            if grows and end > max(old_length, offset + length):
                driver.truncate(max(old_length, offset + length))

    def close(self) -> None:
        self.bounces.close()
