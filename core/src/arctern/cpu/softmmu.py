"""The softmmu pieces shared by targets: physical access with the RAM fast path, and a TLB.

Translated code indexes ``ram.data`` itself for the common case; this module is
the slow path it falls back to (MMIO, ROM, accesses straddling the end of RAM
or a page) and the place where stores keep ``ram.dirty`` and ``ram.code`` right.
"""

from __future__ import annotations

from arctern.cpu.tbcache import BlockCache
from arctern.machine.memory import PAGE_SHIFT, PAGE_SIZE, AddressSpace


class PhysicalMemory:
    """Guest-physical reads and writes for a CPU, with self-modifying-code detection."""

    def __init__(self, address_space: AddressSpace, cache: BlockCache) -> None:
        self.address_space = address_space
        self.ram = address_space.ram
        self.cache = cache

    def read(self, addr: int, size: int) -> int:
        ram = self.ram
        off = addr - ram.base
        if 0 <= off and off + size <= ram.size:
            return int.from_bytes(ram.data[off : off + size], "little")
        return self.address_space.read(addr, size)

    def read_bytes(self, addr: int, length: int) -> bytes:
        """Bytes at ``addr`` (RAM, ROM or MMIO read a byte at a time)."""
        ram = self.ram
        off = addr - ram.base
        if 0 <= off and off + length <= ram.size:
            return bytes(ram.data[off : off + length])
        read = self.address_space.read
        return bytes(read(addr + i, 1) for i in range(length))

    def write(self, addr: int, size: int, value: int) -> bool:
        """Store; return True when the store overwrote translated code (the block must end)."""
        ram = self.ram
        off = addr - ram.base
        if 0 <= off and off + size <= ram.size:
            ram.data[off : off + size] = value.to_bytes(size, "little")
            return self.stored(off, size)
        self.address_space.write(addr, size, value)
        return False

    def stored(self, off: int, size: int) -> bool:
        """Bookkeeping after a CPU store of ``size`` bytes at RAM offset ``off``.

        Marks the pages dirty and, when one holds translated code, invalidates the
        blocks translated from the bytes written. Returns True if any block was dropped.
        """
        ram = self.ram
        first, last = off >> PAGE_SHIFT, (off + size - 1) >> PAGE_SHIFT
        dirty, code = ram.dirty, ram.code
        dirty[first] = 1
        if last != first:
            dirty[first + 1 : last + 1] = b"\x01" * (last - first)
        elif not code[first]:
            return False
        if not any(code[first : last + 1]):
            return False
        generation = self.cache.generation
        ram.code_written(ram.base + off, ram.base + off + size)
        return self.cache.generation != generation


class TLB:
    """Linear page number -> physical page address, one map per kind of access.

    Separate maps for reads, writes and fetches, each for supervisor and user
    accesses, so a hit needs no permission check: an entry exists only once the
    page walk has allowed that kind of access (and, for writes, set the dirty bit).
    """

    __slots__ = ("maps",)

    def __init__(self) -> None:
        #: maps[user][kind] with kind 0 read, 1 write, 2 fetch.
        self.maps: tuple[tuple[dict[int, int], ...], ...] = (
            ({}, {}, {}),
            ({}, {}, {}),
        )

    def lookup(self, vpn: int, kind: int, user: bool) -> int | None:
        return self.maps[user][kind].get(vpn)

    def fill(self, vpn: int, kind: int, user: bool, phys_page: int) -> None:
        self.maps[user][kind][vpn] = phys_page

    def flush(self) -> None:
        for per_user in self.maps:
            for entries in per_user:
                entries.clear()

    def flush_page(self, vaddr: int) -> None:
        vpn = vaddr >> PAGE_SHIFT
        for per_user in self.maps:
            for entries in per_user:
                entries.pop(vpn, None)


__all__ = ["PAGE_SIZE", "PhysicalMemory", "TLB"]
