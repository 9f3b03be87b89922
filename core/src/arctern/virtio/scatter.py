"""Scatter-gather lists of guest memory: the buffers of a popped virtqueue element.

A segment is ``(guest-physical address, length)``. Devices gather what the
driver sent (:func:`sg_read`), scatter what they answer (:func:`sg_write`) or,
for bulk transfers, work on guest RAM in place (:func:`ram_runs`): one bulk
operation per segment, never a loop per byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from arctern.machine.memory import RAM

Segment = tuple[int, int]  # (guest-physical address, length)


class GuestMemory(Protocol):
    """What the helpers need from the machine: an AddressSpace does it."""

    def read_bytes(self, addr: int, length: int) -> bytes: ...

    def write_bytes(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...


def sg_slice(sg: Iterable[Segment], offset: int, length: int) -> list[Segment]:
    """The part ``[offset, offset + length)`` of a scatter-gather list, as segments."""
    out: list[Segment] = []
    for addr, seg_len in sg:
        if length <= 0:
            break
        if offset >= seg_len:
            offset -= seg_len
            continue
        take = min(seg_len - offset, length)
        out.append((addr + offset, take))
        length -= take
        offset = 0
    return out


def sg_read(mem: GuestMemory, sg: Iterable[Segment]) -> bytes:
    """Gather the bytes of ``sg`` (one bulk read per segment)."""
    return b"".join(mem.read_bytes(addr, length) for addr, length in sg)


def sg_write(mem: GuestMemory, sg: Iterable[Segment], data: bytes | memoryview) -> int:
    """Scatter ``data`` over ``sg``; return how many bytes fitted."""
    view = memoryview(data)
    done = 0
    for addr, length in sg:
        if done >= len(view):
            break
        chunk = view[done : done + length]
        mem.write_bytes(addr, chunk)
        done += len(chunk)
    return done


def ram_runs(ram: RAM, sg: Iterable[Segment]) -> Iterator[tuple[int, memoryview]]:
    """Zero-copy DMA: the guest RAM of ``sg`` as (RAM offset, view), contiguous segments merged.

    The segments must lie in RAM (a popped element's do). A device that fills a view
    must then call ``ram.mark_written(offset, offset + len(view))`` so that the dirty
    and code-page maps see the write.
    """
    start = end = None
    for addr, length in sg:
        offset = addr - ram.base
        if offset == end:
            end += length
            continue
        if start is not None:
            yield start, ram.view[start:end]
        start, end = offset, offset + length
    if start is not None:
        yield start, ram.view[start:end]
