"""Refcounts: the refcount table, cached refcount blocks, cluster allocation.

Widths of 1 to 64 bits (refcount_order 0..6) are handled by
:class:`RefblockFormat`. Allocation finds a run of free clusters with bulk
scans of the blocks (``bytes.rstrip`` finds the last nonzero entry of a run),
creates missing refcount blocks (self-describing when possible, as QEMU
does) and grows the refcount table into a fresh, self-describing area at the
end of the image when it is full.

Ordering kept here: a new refcount block reaches the disk, with its own
refcount, before the refcount table entry that points to it; a new refcount
table and its blocks reach the disk before the header points to them.
"""

from __future__ import annotations

import logging
import struct
from array import array

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.cache import TableCache
from arctern_block_qcow2.header import Header
from arctern_block_qcow2.tables import entry_bytes, table_from_bytes, table_to_bytes

log = logging.getLogger(__name__)

_STRUCTS = {
    3: struct.Struct(">B"),
    4: struct.Struct(">H"),
    5: struct.Struct(">I"),
    6: struct.Struct(">Q"),
}


class RefblockFormat:
    """Reading and writing entries of one refcount width in a refcount block."""

    def __init__(self, order: int, cluster_size: int) -> None:
        self.bits = 1 << order
        self.entries = cluster_size * 8 // self.bits
        self.max = (1 << self.bits) - 1
        self._struct = _STRUCTS.get(order)

    def get(self, block: bytearray, i: int) -> int:
        if self._struct:
            return self._struct.unpack_from(block, i * self._struct.size)[0]
        bitpos = i * self.bits
        return (block[bitpos >> 3] >> (bitpos & 7)) & self.max

    def set(self, block: bytearray, i: int, value: int) -> None:
        if self._struct:
            self._struct.pack_into(block, i * self._struct.size, value)
            return
        bitpos = i * self.bits
        shift = bitpos & 7
        byte = block[bitpos >> 3] & ~(self.max << shift)
        block[bitpos >> 3] = byte | (value << shift)

    def last_nonzero(self, block: bytearray, lo: int, hi: int) -> int | None:
        """Index of the last entry in [lo, hi) with a nonzero refcount, or None."""
        bits = self.bits
        while hi > lo:
            blo, bhi = lo * bits // 8, (hi * bits + 7) // 8
            if block.count(0, blo, bhi) == bhi - blo:
                return None
            used = len(block[blo:bhi].rstrip(b"\0"))
            byte = blo + used - 1
            first, last = byte * 8 // bits, (byte * 8 + 7) // bits
            for i in range(min(last, hi - 1), max(first, lo) - 1, -1):
                if self.get(block, i):
                    return i
            hi = max(first, lo)
        return None

    def count_nonzero(self, block: bytes | bytearray) -> int:
        """How many entries of ``block`` are nonzero, with big-integer bit operations.

        OR-folding every entry's bits onto its lowest bit and counting those bits
        works whatever the width and byte order, without a loop over entries.
        """
        value = int.from_bytes(block, "little")
        folded = value
        for shift in range(1, self.bits):
            folded |= value >> shift
        if self.bits < 8:
            pattern = bytes([sum(1 << k for k in range(0, 8, self.bits))]) * len(block)
        else:
            pattern = (b"\x01" + bytes(self.bits // 8 - 1)) * (len(block) * 8 // self.bits)
        return (folded & int.from_bytes(pattern, "little")).bit_count()

    def fill_ones(self, block: bytearray, lo: int, hi: int) -> None:
        """Set entries [lo, hi), all currently zero, to 1 (bulk for byte-wide widths)."""
        if self._struct:
            one = self._struct.pack(1)
            block[lo * len(one) : hi * len(one)] = one * (hi - lo)
        else:
            for i in range(lo, hi):
                self.set(block, i, 1)


class ReleasedOnError:
    """Gives back clusters just allocated when the block using them fails.

    For a request that allocated clusters and then failed before any L2 entry
    points to them (QEMU's qcow2_alloc_cluster_abort): their refcounts drop back
    in the cache, so a retried request leaves no leak. Nothing on disk refers to
    the clusters, so the drop needs no ordering; should it fail too, the original
    error is raised and the clusters merely leak. (A plain class: it is on the
    path of every allocating write, where a generator-based context manager costs.)
    """

    __slots__ = ("refcounts", "offset", "count")

    def __init__(self, refcounts: Refcounts, offset: int, count: int) -> None:
        self.refcounts, self.offset, self.count = refcounts, offset, count

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.refcounts.release(self.offset, self.count)
        return False


class Refcounts:
    """Refcount table plus a write-back cache of refcount blocks for one open image."""

    def __init__(self, file, header: Header, filename: str, cache_clusters: int) -> None:
        self.file = file
        self.h = header
        self.filename = filename
        self.cs = header.cluster_size
        self.fmt = RefblockFormat(header.refcount_order, self.cs)
        self.cache: TableCache[bytearray] = TableCache(
            cache_clusters, self._load_block, self._store_block
        )
        self.reftable = self._read_reftable()
        #: Clusters holding refcount blocks (guest data must never be written there).
        self.block_clusters = {e >> header.cluster_bits for e in self.reftable if e}
        self.free_hint = 0
        #: Clusters that must never be allocated (the header, L1, reftable...): (start, end).
        self.reserved: list[tuple[int, int]] = []

    # --- reading ------------------------------------------------------------

    def _read_reftable(self) -> array:
        buf = bytearray(self.h.refcount_table_clusters * self.cs)
        self.file.pread(self.h.refcount_table_offset, memoryview(buf))
        return table_from_bytes(buf)

    def _load_block(self, offset: int) -> bytearray:
        """Read a refcount block named by the image (blocks we create are installed directly)."""
        if offset + self.cs > self.file.getlength():
            raise self._corrupt(f"refcount block at 0x{offset:x} lies past the end of the file")
        if self.reserved_in(offset // self.cs, offset // self.cs + 1) is not None:
            raise self._corrupt(
                f"refcount block at 0x{offset:x} overlaps the header, the L1 "
                "table or the refcount table"
            )
        block = bytearray(self.cs)
        self.file.pread(offset, memoryview(block))
        return block

    def _store_block(self, offset: int, block: bytearray) -> None:
        self.file.pwrite(offset, memoryview(block))

    def block_offset(self, rt_index: int) -> int:
        """Offset of refcount block ``rt_index`` (0: not allocated)."""
        if rt_index >= len(self.reftable):
            return 0
        entry = self.reftable[rt_index]
        offset = entry & L.REFT_OFFSET_MASK
        if entry & ~L.REFT_OFFSET_MASK or offset % self.cs:
            raise self._corrupt(
                f"refcount table entry {rt_index} (0x{entry:x}) is not cluster aligned"
            )
        return offset

    def get(self, cluster: int) -> int:
        block_off = self.block_offset(cluster // self.fmt.entries)
        if not block_off:
            return 0
        return self.fmt.get(self.cache.get(block_off), cluster % self.fmt.entries)

    @property
    def covered_clusters(self) -> int:
        return len(self.reftable) * self.fmt.entries

    # --- updating -----------------------------------------------------------

    def update(self, first: int, count: int, delta: int) -> list[int]:
        """Add ``delta`` to the refcounts of clusters [first, first+count).

        Returns the clusters whose refcount dropped to zero.
        """
        freed: list[int] = []
        epb = self.fmt.entries
        cluster, end = first, first + count
        while cluster < end:
            rt_index = cluster // epb
            stop = min(end, (rt_index + 1) * epb)
            if delta > 0:
                self.ensure_block(rt_index)
            block_off = self.block_offset(rt_index)
            if not block_off:
                raise self._corrupt(f"freeing cluster {cluster} with no refcount block")
            block = self.cache.get(block_off)
            lo, hi = cluster - rt_index * epb, stop - rt_index * epb
            if delta == 1 and self.fmt.last_nonzero(block, lo, hi) is None:
                self.fmt.fill_ones(block, lo, hi)
            else:
                for i in range(lo, hi):
                    value = self.fmt.get(block, i) + delta
                    if value < 0 or value > self.fmt.max:
                        raise self._corrupt(
                            f"refcount of cluster {rt_index * epb + i} out of range ({value})"
                        )
                    self.fmt.set(block, i, value)
                    if value == 0:
                        freed.append(rt_index * epb + i)
            self.cache.mark_dirty(block_off, block)
            cluster = stop
        if freed:
            self.free_hint = min(self.free_hint, freed[0])
        return freed

    def set_value(self, cluster: int, value: int) -> None:
        """Set one refcount outright (check repair)."""
        rt_index = cluster // self.fmt.entries
        self.ensure_block(rt_index)
        block_off = self.block_offset(rt_index)
        block = self.cache.get(block_off)
        self.fmt.set(block, cluster % self.fmt.entries, value)
        self.cache.mark_dirty(block_off, block)

    def flush(self) -> bool:
        return self.cache.flush()

    def last_used_cluster(self) -> int:
        """The highest cluster with a nonzero refcount (-1 if none)."""
        epb = self.fmt.entries
        for rt_index in range(len(self.reftable) - 1, -1, -1):
            offset = self.block_offset(rt_index)
            if offset:
                last = self.fmt.last_nonzero(self.cache.get(offset), 0, epb)
                if last is not None:
                    return rt_index * epb + last
        return -1

    # --- allocation ---------------------------------------------------------

    def find_free(self, count: int) -> int:
        """First cluster of a run of ``count`` free clusters at or after the hint."""
        epb = self.fmt.entries
        start = max(self.free_hint, 1)
        while True:
            probe, end = start, start + count
            while probe < end:
                rt_index = probe // epb
                stop = min(end, (rt_index + 1) * epb)
                block_off = self.block_offset(rt_index)
                used = None
                if block_off:
                    block = self.cache.get(block_off)
                    used = self.fmt.last_nonzero(
                        block, probe - rt_index * epb, stop - rt_index * epb
                    )
                if used is None:
                    used = self.reserved_in(probe, stop)
                else:
                    used += rt_index * epb
                if used is not None:
                    start = used + 1
                    break
                probe = stop
            else:
                return start

    def reserved_in(self, lo: int, hi: int) -> int | None:
        hits = [min(hi, end) - 1 for start, end in self.reserved if start < hi and end > lo]
        return max(hits) if hits else None

    def alloc(self, count: int) -> int:
        """Allocate ``count`` contiguous clusters (refcount 1); return the host offset."""
        epb = self.fmt.entries
        while True:
            first = self.find_free(count)
            # Like QEMU's free_cluster_index, the hint moves past the run before any
            # missing refcount block is created, so the blocks land after the run.
            # Holes too small for this run stay skipped until something below is freed.
            self.free_hint = first + count
            missing = [
                rt_index
                for rt_index in range(first // epb, (first + count - 1) // epb + 1)
                if not self.block_offset(rt_index)
            ]
            if not missing:
                break
            for rt_index in missing:
                self.ensure_block(rt_index)
            if self.find_free_at(first, count):
                break
        self.update(first, count, 1)
        return first * self.cs

    def released_on_error(self, offset: int, count: int) -> ReleasedOnError:
        """A ``with`` block that gives ``count`` clusters at ``offset`` back if it fails."""
        return ReleasedOnError(self, offset, count)

    def release(self, offset: int, count: int) -> None:
        """Drop the refcounts of clusters just allocated that nothing refers to."""
        try:
            self.update(offset // self.cs, count, -1)
        except Exception:
            log.warning("%s: could not release clusters at 0x%x", self.filename, offset)

    def find_free_at(self, first: int, count: int) -> bool:
        """Whether clusters [first, first+count) are all still free."""
        saved, self.free_hint = self.free_hint, first
        try:
            return self.find_free(count) == first
        finally:
            self.free_hint = saved

    def ensure_block(self, rt_index: int) -> None:
        """Make sure refcount block ``rt_index`` exists, creating it (and table room) if not."""
        epb = self.fmt.entries
        while not self.block_offset(rt_index):
            if rt_index >= len(self.reftable):
                self._grow_table(rt_index)
                continue
            cluster = self.find_free(1)
            home = cluster // epb
            block = bytearray(self.cs)
            offset = cluster * self.cs
            if home == rt_index:
                self.fmt.set(block, cluster % epb, 1)
                self._install_block(rt_index, offset, block)
            elif not self.block_offset(home):
                self.ensure_block(home)
                continue
            else:
                self.update(cluster, 1, 1)
                with self.released_on_error(offset, 1):
                    self.cache.write_one(self.block_offset(home))
                    self._install_block(rt_index, offset, block)
            log.debug("%s: new refcount block %d at 0x%x", self.filename, rt_index, offset)

    def _install_block(self, rt_index: int, offset: int, block: bytearray) -> None:
        """Write a new refcount block, then the table entry naming it; then use it."""
        self.file.pwrite(offset, memoryview(block))
        self.file.flush()
        self.file.pwrite(self.h.refcount_table_offset + rt_index * 8, entry_bytes(offset))
        self.reftable[rt_index] = offset
        self.block_clusters.add(offset // self.cs)
        self.cache.install(offset, block, dirty=False)

    def _grow_table(self, needed_index: int) -> None:
        """Move the refcount table to a new, larger, self-describing area at the end."""
        epb, cs = self.fmt.entries, self.cs
        self.flush()
        file_clusters = -(-self.file.getlength() // cs)
        area = max(self.covered_clusters, file_clusters, self.free_hint)
        entries = max(needed_index + 1, len(self.reftable) * 3 // 2)
        blocks = 0
        while True:
            table_clusters = -(-entries * 8 // cs)
            end = area + table_clusters + blocks
            need_blocks = (end - 1) // epb - area // epb + 1
            need_entries = max(entries, (end - 1) // epb + 1)
            if need_blocks == blocks and need_entries == entries:
                break
            blocks, entries = need_blocks, need_entries
        table_clusters = -(-entries * 8 // cs)
        if table_clusters * cs > L.MAX_REFTABLE_BYTES:
            raise ImageFormatError(
                f"qcow2 image '{self.filename}': refcount table would exceed its size limit"
            )
        blocks_at = area + table_clusters
        first_block = area // epb
        new_blocks = [bytearray(cs) for _ in range(blocks)]
        for n, block in enumerate(new_blocks):
            base = (first_block + n) * epb
            lo, hi = max(area, base), min(blocks_at + blocks, base + epb)
            self.fmt.fill_ones(block, lo - base, hi - base)
        table = array("Q", self.reftable)
        table.extend([0] * (table_clusters * cs // 8 - len(table)))
        for n in range(blocks):
            table[first_block + n] = (blocks_at + n) * cs
        self.file.pwrite(blocks_at * cs, b"".join(new_blocks))
        self.file.pwrite(area * cs, table_to_bytes(table))
        self.file.flush()
        old_offset, old_clusters = self.h.refcount_table_offset, self.h.refcount_table_clusters
        self.file.pwrite(48, struct.pack(">QI", area * cs, table_clusters))
        self.file.flush()
        self.h.refcount_table_offset, self.h.refcount_table_clusters = area * cs, table_clusters
        self.reftable = table
        self.block_clusters.update(range(blocks_at, blocks_at + blocks))
        for n, block in enumerate(new_blocks):
            self.cache.install((blocks_at + n) * cs, block, dirty=False)
        self.reserved = [
            r for r in self.reserved if r != (old_offset // cs, old_offset // cs + old_clusters)
        ]
        self.reserved.append((area, area + table_clusters))
        self.update(old_offset // cs, old_clusters, -1)
        log.debug(
            "%s: refcount table moved to 0x%x (%d clusters)",
            self.filename,
            area * cs,
            table_clusters,
        )

    def _corrupt(self, msg: str) -> ImageFormatError:
        return ImageFormatError(f"qcow2 image '{self.filename}' is corrupt: {msg}")
