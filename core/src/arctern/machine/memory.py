"""Guest memory: RAM with dirty and code-page maps, MMIO regions, port I/O.

This module is the contract between CPUs, devices and migration:

* :class:`RAM` is one bytearray (``ram.data``), mapped at ``ram.base`` in the
  guest-physical address space, so a CPU reads and writes it directly and
  migration sends it in bulk. Two maps, one byte per 4 KiB page, travel with
  it:

  - ``ram.dirty``: set to 1 by *every* writer of a page (CPU store fast
    path, DMA, loader). Migration reads and clears it per round in bulk
    (:meth:`RAM.take_dirty`). One bytearray store is the whole cost on the
    guest's store path.
  - ``ram.code``: nonzero while some CPU holds translated code from that
    page. A writer that finds it nonzero calls :meth:`RAM.code_written`,
    which tells every listener (the CPUs' translation caches) to invalidate
    that range: this is how self-modifying code and DMA over code work for
    any target.

* :class:`AddressSpace` maps guest-physical addresses to RAM, ROM and MMIO
  regions; :class:`IOSpace` is the x86-style port space. Devices implement
  :class:`MMIOHandler` (``mmio_read``/``mmio_write``) or :class:`PortHandler`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from arctern.errors import MachineError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)

_DIRTY_RUN = re.compile(rb"\x01+")


class RAM:
    """Guest RAM at ``base``: the bytes, the dirty-page map and the code-page map."""

    def __init__(self, size: int, base: int = 0) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise MachineError(f"RAM size must be a positive multiple of {PAGE_SIZE} bytes")
        self.base = base
        self.size = size
        self.end = base + size
        self.data = bytearray(size)
        self.view = memoryview(self.data)
        pages = size >> PAGE_SHIFT
        self.dirty = bytearray(b"\x01" * pages)
        self.code = bytearray(pages)
        self._code_listeners: list[Callable[[int, int], None]] = []

    # --- writers other than the CPU fast path ---------------------------------

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` to guest-physical ``addr`` (DMA, loaders), keeping both maps right."""
        off = addr - self.base
        n = len(data)
        if off < 0 or off + n > self.size:
            raise MachineError(f"RAM write at {addr:#x}+{n:#x} outside RAM")
        self.data[off : off + n] = data
        if n:
            self.mark_written(off, off + n)

    def read(self, addr: int, length: int) -> bytes:
        off = addr - self.base
        if off < 0 or off + length > self.size:
            raise MachineError(f"RAM read at {addr:#x}+{length:#x} outside RAM")
        return bytes(self.view[off : off + length])

    def mark_written(self, start: int, end: int) -> None:
        """Note that RAM offsets [start, end) were written by someone other than a CPU store."""
        first, last = start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT
        self.dirty[first : last + 1] = b"\x01" * (last - first + 1)
        if any(self.code[first : last + 1]):
            self.code_written(self.base + start, self.base + end)

    # --- translated code ---------------------------------------------------

    def add_code_listener(self, listener: Callable[[int, int], None]) -> None:
        """Call ``listener(start, end)`` when guest-physical [start, end) holding code changes."""
        self._code_listeners.append(listener)

    def remove_code_listener(self, listener: Callable[[int, int], None]) -> None:
        self._code_listeners.remove(listener)

    def code_written(self, start: int, end: int) -> None:
        """A write hit a page flagged in ``self.code``: invalidate translations of [start, end)."""
        for listener in self._code_listeners:
            listener(start, end)

    # --- dirty log (migration) ---------------------------------------------

    def take_dirty(self) -> Iterator[tuple[int, int]]:
        """Yield runs (first page, page count) dirtied since the last call, and clear them."""
        snapshot = bytes(self.dirty)
        self.dirty[:] = bytes(len(self.dirty))
        for match in _DIRTY_RUN.finditer(snapshot):
            yield match.start(), match.end() - match.start()

    def dirty_count(self) -> int:
        return self.dirty.count(1)

    def mark_all_dirty(self) -> None:
        self.dirty[:] = b"\x01" * len(self.dirty)


class MMIOHandler(Protocol):
    def mmio_read(self, offset: int, size: int) -> int: ...

    def mmio_write(self, offset: int, size: int, value: int) -> None: ...


class PortHandler(Protocol):
    def port_read(self, port: int, size: int) -> int: ...

    def port_write(self, port: int, size: int, value: int) -> None: ...


@dataclass
class Region:
    """A non-RAM region of the physical address space."""

    base: int
    size: int
    name: str
    handler: MMIOHandler | None = None  # MMIO
    rom: bytes | None = None  # read-only memory; writes are ignored

    @property
    def end(self) -> int:
        return self.base + self.size


class AddressSpace:
    """Guest-physical memory: one RAM block plus MMIO and ROM regions that never overlap it.

    CPUs take the fast path themselves (``ram.base <= addr < ram.end``: index
    ``ram.data`` and mark ``ram.dirty``); everything else comes here through
    :meth:`read` / :meth:`write`. Unassigned reads return 0 and unassigned
    writes are dropped, as on QEMU's machines.
    """

    def __init__(self, ram: RAM) -> None:
        self.ram = ram
        self._regions: list[Region] = []
        self._bases: list[int] = []

    def add_mmio(self, base: int, size: int, handler: MMIOHandler, name: str) -> Region:
        return self._add(Region(base, size, name, handler=handler))

    def add_rom(self, base: int, data: bytes, name: str) -> Region:
        return self._add(Region(base, len(data), name, rom=bytes(data)))

    def _add(self, region: Region) -> Region:
        ram = self.ram
        if region.base < ram.end and ram.base < region.end:
            raise MachineError(f"region {region.name} at {region.base:#x} overlaps RAM")
        i = bisect.bisect(self._bases, region.base)
        for other in self._regions[max(0, i - 1) : i + 1]:
            if region.base < other.end and other.base < region.end:
                raise MachineError(
                    f"region {region.name} at {region.base:#x} overlaps {other.name}"
                )
        self._regions.insert(i, region)
        self._bases.insert(i, region.base)
        return region

    def find(self, addr: int) -> Region | None:
        i = bisect.bisect(self._bases, addr) - 1
        if i >= 0 and addr < self._regions[i].end:
            return self._regions[i]
        return None

    def read(self, addr: int, size: int) -> int:
        """Read a little-endian value of ``size`` bytes (1, 2, 4, 8)."""
        ram = self.ram
        if ram.base <= addr and addr + size <= ram.end:
            off = addr - ram.base
            return int.from_bytes(ram.data[off : off + size], "little")
        region = self.find(addr)
        if region is None:
            return 0
        if region.rom is not None:
            off = addr - region.base
            return int.from_bytes(region.rom[off : off + size].ljust(size, b"\0"), "little")
        return region.handler.mmio_read(addr - region.base, size)

    def write(self, addr: int, size: int, value: int) -> None:
        """Write a little-endian value of ``size`` bytes (1, 2, 4, 8)."""
        ram = self.ram
        if ram.base <= addr and addr + size <= ram.end:
            ram.write(addr, (value & ((1 << (size * 8)) - 1)).to_bytes(size, "little"))
            return
        region = self.find(addr)
        if region is None or region.rom is not None:
            return
        region.handler.mmio_write(addr - region.base, size, value & ((1 << (size * 8)) - 1))

    # --- DMA -----------------------------------------------------------------

    def read_bytes(self, addr: int, length: int) -> bytes:
        """Bulk read for DMA; must lie within RAM."""
        return self.ram.read(addr, length)

    def write_bytes(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Bulk write for DMA; must lie within RAM."""
        self.ram.write(addr, data)


class IOSpace:
    """The x86 port I/O space (64 Ki ports). Unassigned reads return all ones."""

    def __init__(self) -> None:
        self._handlers: dict[int, tuple[PortHandler, int]] = {}

    def add(self, base: int, count: int, handler: PortHandler, name: str = "") -> None:
        for port in range(base, base + count):
            if port in self._handlers:
                raise MachineError(f"I/O port {port:#x} of {name or handler} is already in use")
            self._handlers[port] = (handler, base)

    def read(self, port: int, size: int) -> int:
        entry = self._handlers.get(port)
        if entry is None:
            return (1 << (size * 8)) - 1
        handler, _base = entry
        return handler.port_read(port, size)

    def write(self, port: int, size: int, value: int) -> None:
        entry = self._handlers.get(port)
        if entry is not None:
            entry[0].port_write(port, size, value & ((1 << (size * 8)) - 1))
