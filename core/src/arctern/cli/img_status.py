"""Allocation status through a backing chain, as qemu-img's ``get_block_status`` sees it.

Used by ``map`` (which reports it), and by ``convert`` and ``compare`` (which skip
ranges that read as zeroes instead of reading them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from arctern.block.driver import (
    STATUS_ALLOCATED,
    STATUS_COMPRESSED,
    STATUS_DATA,
    STATUS_OFFSET_VALID,
    STATUS_RECURSE,
    STATUS_ZERO,
)

#: Longest range asked for at once (qemu-img asks at most 1 GiB per call too).
MAX_QUERY = 1 << 30


@dataclass
class MapEntry:
    """One run of ``qemu-img map`` (its JSON keys, plus the file holding the data)."""

    start: int
    length: int
    depth: int
    present: bool
    zero: bool
    data: bool
    offset: int | None = None
    filename: str | None = None
    compressed: bool = False

    def mergeable(self, nxt: MapEntry) -> bool:
        """qemu-img's ``entry_mergeable``: same kind, and contiguous in the file too."""
        if self.length == 0:
            return False
        same = (
            self.zero,
            self.data,
            self.depth,
            self.present,
            self.filename,
            self.offset is None,
        ) == (nxt.zero, nxt.data, nxt.depth, nxt.present, nxt.filename, nxt.offset is None)
        if not same:
            return False
        return self.offset is None or self.offset + self.length == nxt.offset


def _layer_status(node: Any, offset: int, length: int) -> tuple[int, int, int | None]:
    """Flags, length and host offset one node reports, refined by its file child (RECURSE)."""
    status = node.driver.block_status(offset, length)
    flags, count = status.flags, max(1, min(status.length, length))
    if flags & (STATUS_DATA | STATUS_ZERO):
        flags |= STATUS_ALLOCATED
    file = getattr(node, "file", None)
    # RECURSE (QEMU: qcow2 with preallocated metadata): data mapped into a hole of the file
    # reads as zeroes, so the run is reported as ZERO as well as DATA.
    wants_detail = STATUS_RECURSE | STATUS_DATA | STATUS_OFFSET_VALID
    if (flags & wants_detail) == wants_detail and not flags & STATUS_ZERO and file is not None:
        inner = file.driver.block_status(status.offset, count)
        count = max(1, min(inner.length, count))
        if inner.flags & STATUS_ZERO:
            flags |= STATUS_ZERO
    return flags, count, status.offset if flags & STATUS_OFFSET_VALID else None


def chain_entry(top: Any, offset: int, length: int) -> MapEntry:
    """Status of the range at ``offset``: the first layer of the chain that decides it."""
    node, depth = top, 0
    length = min(length, MAX_QUERY)
    while True:
        flags, count, host = _layer_status(node, offset, length)
        if flags & (STATUS_DATA | STATUS_ZERO):
            break
        backing = getattr(node, "backing", None)
        if backing is None:
            flags |= STATUS_ZERO  # nothing below: unallocated reads as zeroes
            break
        if offset >= backing.getlength():
            flags, host = STATUS_ZERO, None  # past the end of a shorter backing file
            break
        length = min(count, backing.getlength() - offset)
        node, depth = backing, depth + 1
    file = getattr(node, "file", None)
    return MapEntry(
        start=offset,
        length=count,
        depth=depth,
        present=bool(flags & STATUS_ALLOCATED),
        zero=bool(flags & STATUS_ZERO),
        data=bool(flags & STATUS_DATA),
        offset=host,
        filename=file.filename if host is not None and file is not None else None,
        compressed=bool(flags & STATUS_COMPRESSED),
    )


def walk(top: Any, start: int, end: int) -> Iterator[MapEntry]:
    """Every status run from ``start`` to ``end``, unmerged."""
    offset = start
    while offset < end:
        entry = chain_entry(top, offset, end - offset)
        yield entry
        offset += entry.length


def merge(entries: Iterable[MapEntry], human: bool = False) -> Iterator[MapEntry]:
    """Runs merged as qemu-img map merges them.

    ``human``: the human layout shows only data, so (as qemu-img does) every run
    after the first that is zero or unallocated counts as plain zeroes and merges
    with its neighbours of the same kind.
    """
    current: MapEntry | None = None
    for entry in entries:
        if human and current is not None and (not entry.data or entry.zero):
            entry.data, entry.zero = False, True
        if current is not None and current.mergeable(entry):
            current.length += entry.length
            continue
        if current is not None:
            yield current
        current = entry
    if current is not None:
        yield current
