"""Requests of any alignment on drivers that need aligned ones (O_DIRECT files).

A driver that declares ``request_alignment > 1`` only ever sees offsets,
lengths and buffer addresses that are multiples of it: requests go through a
page-aligned bounce buffer (an anonymous mmap), and writes that do not cover
whole blocks read the partial head and tail blocks first (read-modify-write).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arctern.block.driver import BlockDriver


def _bounds(offset: int, length: int, align: int) -> tuple[int, int]:
    start = offset - offset % align
    end = -(-(offset + length) // align) * align
    return start, end


@contextmanager
def _bounce(size: int) -> Iterator[memoryview]:
    area = mmap.mmap(-1, max(size, 1))
    view = memoryview(area)[:size]
    try:
        yield view
    finally:
        view.release()
        area.close()


def aligned_pread(driver: BlockDriver, offset: int, buf: memoryview, align: int) -> None:
    """``driver.pread`` of ``buf`` at ``offset`` through aligned requests."""
    start, end = _bounds(offset, len(buf), align)
    with _bounce(end - start) as bounce:
        driver.pread(start, bounce)
        buf[:] = bounce[offset - start : offset - start + len(buf)]


def aligned_pwrite(driver: BlockDriver, offset: int, data: memoryview, align: int) -> None:
    """``driver.pwrite`` of ``data`` at ``offset`` with read-modify-write of partial blocks.

    When the last block sticks out past the end of a protocol node, the
    padding would grow the file; it is cut back to where the data ends.
    """
    length = len(data)
    start, end = _bounds(offset, length, align)
    old_length = driver.getlength() if driver.protocol else None
    with _bounce(end - start) as bounce:
        if offset != start:
            driver.pread(start, bounce[:align])
        if (offset + length) % align and (end - align >= start + align or offset == start):
            driver.pread(end - align, bounce[-align:])
        bounce[offset - start : offset - start + length] = data
        driver.pwrite(start, bounce)
    if old_length is not None and end > max(old_length, offset + length):
        driver.truncate(max(old_length, offset + length))
