"""Guest-to-host cluster mapping: the active L1 table and the L2 table cache.

Writes go through :meth:`ClusterMap.writable_l2`, which gives an L2 table this
image owns alone (refcount 1), allocating a new one or copying one shared with
a snapshot. A new L2 table reaches the disk (after the refcounts it depends
on) before the L1 entry that points to it.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.cache import TableCache
from arctern_block_qcow2.compress import compressed_extent
from arctern_block_qcow2.header import Header
from arctern_block_qcow2.refcount import Refcounts
from arctern_block_qcow2.tables import entry_bytes, table_from_bytes, table_to_bytes


class Kind:
    """What an L2 entry describes (plain constants: an Enum costs at import and per lookup)."""

    UNALLOCATED = "unallocated"
    ZERO_PLAIN = "zero"
    ZERO_ALLOC = "zero-alloc"
    NORMAL = "normal"
    COMPRESSED = "compressed"


def entry_kind(entry: int) -> str:
    if entry & L.OFLAG_COMPRESSED:
        return Kind.COMPRESSED
    if entry & L.OFLAG_ZERO:
        return Kind.ZERO_ALLOC if entry & L.L2E_OFFSET_MASK else Kind.ZERO_PLAIN
    return Kind.NORMAL if entry & L.L2E_OFFSET_MASK else Kind.UNALLOCATED


def host_clusters(entry: int, cluster_bits: int) -> tuple[int, int] | None:
    """(first host cluster, count) an L2 entry holds a reference on, or None."""
    kind = entry_kind(entry)
    if kind is Kind.COMPRESSED:
        offset, length = compressed_extent(entry, cluster_bits)
        first = offset >> cluster_bits
        return first, ((offset + length - 1) >> cluster_bits) - first + 1
    if kind in (Kind.NORMAL, Kind.ZERO_ALLOC):
        return (entry & L.L2E_OFFSET_MASK) >> cluster_bits, 1
    return None


class ClusterMap:
    def __init__(
        self,
        file,
        header: Header,
        refcounts: Refcounts,
        filename: str,
        cache_tables: int,
        before_l2_store: Callable[[], None],
        on_free: Callable[[int, int], None],
    ) -> None:
        self.file = file
        self.h = header
        self.refcounts = refcounts
        self.filename = filename
        self.cs = header.cluster_size
        self.l2_entries = self.cs // 8
        self.on_free = on_free
        self.l1 = self.read_l1(header.l1_table_offset, header.l1_size)
        #: Clusters holding the active L2 tables (guest data must never be written there).
        self.l2_clusters = {(e & L.L1E_OFFSET_MASK) >> header.cluster_bits for e in self.l1 if e}
        self.l2_clusters.discard(0)
        self.cache: TableCache[array] = TableCache(
            cache_tables, self._load_l2, self._store_l2, before_l2_store
        )

    # --- tables on disk -------------------------------------------------------

    def read_l1(self, offset: int, size: int) -> array:
        buf = bytearray(size * 8)
        self.file.pread(offset, memoryview(buf))
        return table_from_bytes(buf)

    def _load_l2(self, offset: int) -> array:
        """Read an L2 table named by the image (tables we create are installed directly)."""
        if offset + self.cs > self.file.getlength():
            raise self._corrupt(f"L2 table at 0x{offset:x} lies past the end of the file")
        cluster = offset // self.cs
        if (
            self.refcounts.reserved_in(cluster, cluster + 1) is not None
            or cluster in self.refcounts.block_clusters
        ):
            raise self._corrupt(
                f"L2 table at 0x{offset:x} overlaps the header, the L1 table or the refcount table"
            )
        buf = bytearray(self.cs)
        self.file.pread(offset, memoryview(buf))
        return table_from_bytes(buf)

    def _store_l2(self, offset: int, table: array) -> None:
        self.file.pwrite(offset, table_to_bytes(table))

    def l2_offset(self, l1_index: int) -> int:
        """Offset of the L2 table for ``l1_index`` (0: unallocated)."""
        if l1_index >= len(self.l1):
            return 0
        offset = self.l1[l1_index] & L.L1E_OFFSET_MASK
        if offset % self.cs:
            raise self._corrupt(f"L2 table offset 0x{offset:x} is not cluster aligned")
        return offset

    def l2_table(self, l1_index: int) -> array | None:
        offset = self.l2_offset(l1_index)
        return self.cache.get(offset) if offset else None

    # --- writing --------------------------------------------------------------

    def writable_l2(self, l1_index: int) -> tuple[int, array]:
        """The L2 table for ``l1_index``, owned by the active L1 alone (allocated if needed)."""
        entry = self.l1[l1_index]
        old = self.l2_offset(l1_index)
        if old and entry & L.OFLAG_COPIED:
            return old, self.cache.get(old)
        table = array("Q", self.cache.get(old)) if old else array("Q", bytes(self.cs))
        new = self.refcounts.alloc(1)
        with self.refcounts.released_on_error(new, 1):
            try:
                self.cache.install(new, table, dirty=True)
                self.cache.write_one(new)
                self.file.flush()
                self.set_l1_entry(l1_index, new | L.OFLAG_COPIED)
            except BaseException:
                self.cache.forget(new)  # never written later to a cluster given back
                raise
        self.l2_clusters.add(new >> self.h.cluster_bits)
        if old:
            self.on_free(old >> self.h.cluster_bits, 1)
        return new, table

    def set_l1_entry(self, l1_index: int, value: int) -> None:
        """Write an L1 entry; the table in memory changes only once the write succeeded."""
        self.file.pwrite(self.h.l1_table_offset + l1_index * 8, entry_bytes(value))
        self.l1[l1_index] = value

    def grow_l1(self, new_size: int) -> None:
        """Move the active L1 table to a larger copy (resize)."""
        if new_size * 8 > L.MAX_L1_BYTES:
            raise ImageFormatError(f"qcow2 image '{self.filename}': L1 table would be too large")
        clusters = -(-new_size * 8 // self.cs)
        offset = self.refcounts.alloc(clusters)
        table = array("Q", self.l1)
        table.extend([0] * (new_size - len(table)))
        old_offset, old_size = self.h.l1_table_offset, self.h.l1_size
        with self.refcounts.released_on_error(offset, clusters):
            self.file.pwrite(offset, table_to_bytes(table))  # not padded, as QEMU
            self.file.flush()
            self.file.pwrite(36, struct.pack(">IQ", new_size, offset))
        self.file.flush()
        self.h.l1_size, self.h.l1_table_offset = new_size, offset
        self.l1 = table
        cb = self.h.cluster_bits
        self.refcounts.reserved.remove(
            (old_offset >> cb, (old_offset >> cb) + _clusters(old_size * 8, self.cs))
        )
        self.refcounts.reserved.append((offset >> cb, (offset >> cb) + clusters))
        if old_size:  # the header pointing elsewhere is on disk: free the old table now
            self.refcounts.update(old_offset >> cb, _clusters(old_size * 8, self.cs), -1)

    def _corrupt(self, msg: str) -> ImageFormatError:
        return ImageFormatError(f"qcow2 image '{self.filename}' is corrupt: {msg}")


def _clusters(nbytes: int, cluster_size: int) -> int:
    return -(-nbytes // cluster_size)


def reserved_ranges(h: Header) -> list[tuple[int, int]]:
    """Cluster ranges that hold the header, active L1, refcount table and snapshot table."""
    cb, cs = h.cluster_bits, h.cluster_size
    ranges = [(0, 1)]
    for offset, nbytes in (
        (h.l1_table_offset, h.l1_size * 8),
        (h.refcount_table_offset, h.refcount_table_clusters * cs),
    ):
        ranges.append((offset >> cb, (offset >> cb) + _clusters(nbytes, cs)))
    return ranges
