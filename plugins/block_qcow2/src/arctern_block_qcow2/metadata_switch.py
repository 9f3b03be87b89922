"""Replace the image's metadata roots in one header write (the snapshot operations' commit).

Creating, applying or deleting an internal snapshot changes, together, the
active L1 table, COPIED flags in L2 tables, the snapshot table and the
refcounts of every cluster the snapshot reaches. No order of in-place writes
keeps such a change consistent at every instant: between a refcount going from
1 to 2 and the COPIED flag of the entry that uses it being cleared, ``qemu-img
check`` rightly sees a corruption. So nothing in use is written in place:

* every new structure (L1 table, copied L2 tables, snapshot table) and a copy
  of every refcount block that changes, then a new refcount table, are written
  to one run of clusters free in the old refcounts (the first run large enough,
  else past everything in use), so a crash before the switch leaves no trace
  (at most a longer file);
* they reach the disk, then one write of header bytes 24..72 (virtual size,
  L1 table, refcount table, snapshot count and table: one sector) makes them
  the image;
* the old structures are then unreferenced and already free in the new
  refcounts (clusters freed are discarded last).
"""

from __future__ import annotations

import errno
import logging
import struct
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING

from arctern.block.driver import SnapshotError
from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.refscan import pack, unpack
from arctern_block_qcow2.tables import table_to_bytes

if TYPE_CHECKING:
    from arctern_block_qcow2.driver import Qcow2Driver

log = logging.getLogger(__name__)

#: Header bytes 24..72: size, crypt_method, l1_size, l1_table_offset,
#: refcount_table_offset, refcount_table_clusters, nb_snapshots, snapshots_offset.
_ROOTS = struct.Struct(">QIIQQIIQ")


class RefDeltas:
    """Signed refcount changes per cluster, in chunks of CHUNK clusters (allocated when used).

    Chunks rather than whole refcount blocks: a block of 2 MiB clusters with 1-bit
    refcounts covers 16 Mi clusters, a change of one of which must not cost that much.
    """

    CHUNK = 4096

    def __init__(self, entries_per_block: int) -> None:
        self.chunk = min(self.CHUNK, entries_per_block)  # both powers of two
        self.per_block = entries_per_block // self.chunk
        self.chunks: dict[int, array] = {}

    def add(self, first: int, count: int, delta: int) -> None:
        self.add_each(range(first, first + count), delta)

    def add_each(self, clusters: Iterable[int], delta: int) -> None:
        """Add ``delta`` to the change of every cluster listed (the data of an L2 table)."""
        size, chunks = self.chunk, self.chunks
        for cluster in clusters:
            index = cluster // size
            chunk = chunks.get(index)
            if chunk is None:
                chunk = chunks[index] = array("q", bytes(8 * size))
            chunk[cluster - index * size] += delta

    def by_block(self) -> dict[int, list[int]]:
        """Refcount block index -> the indexes of its changed chunks, in order."""
        blocks: dict[int, list[int]] = {}
        for index in sorted(self.chunks):
            blocks.setdefault(index // self.per_block, []).append(index)
        return blocks


class MetadataSwitch:
    """New metadata for ``drv``'s image, built in memory and made the image at ``commit``.

    The driver's tables must be written back (no dirty cache, no queued frees)
    before one is made; the driver is reloaded from the file after the commit.
    """

    def __init__(self, drv: Qcow2Driver) -> None:
        self.drv = drv
        self.h = drv.h
        self.cs = drv.h.cluster_size
        self.rc = drv.refcounts
        self.deltas = RefDeltas(self.rc.fmt.entries)
        file_clusters = -(-drv.node.file.getlength() // self.cs)
        self.area = max(file_clusters, self.rc.last_used_cluster() + 1)
        self._next = self.area
        self._payload: list[tuple[int, bytes]] = []
        self._stored: dict[int, list[int]] = {}  # chunk index -> stored refcounts, decoded

    def reference(self, first: int, count: int, delta: int) -> None:
        """Record that clusters [first, first+count) gain (or lose) ``delta`` references."""
        self.deltas.add(first, count, delta)

    def refcount_after(self, cluster: int) -> int:
        """The refcount ``cluster`` will have (the clusters this switch places excepted)."""
        return self.refcounts_after([cluster])[0]

    def refcounts_after(self, clusters: list[int]) -> list[int]:
        """``refcount_after`` of every cluster listed (in one loop: an L2 table's data)."""
        size, stored_chunks, delta_chunks = self.deltas.chunk, self._stored, self.deltas.chunks
        counts = []
        for cluster in clusters:
            index = cluster // size
            i = cluster - index * size
            stored = stored_chunks.get(index)
            if stored is None:
                stored = stored_chunks[index] = self._decode_stored(index)
            deltas = delta_chunks.get(index)
            counts.append(stored[i] + (deltas[i] if deltas is not None else 0))
        return counts

    def _decode_stored(self, chunk: int) -> list[int]:
        """The stored refcounts of one chunk of clusters (zeroes where no block exists)."""
        fmt, size = self.rc.fmt, self.deltas.chunk
        offset = self.rc.block_offset(chunk // self.deltas.per_block)
        if not offset:
            return [0] * size
        lo = chunk % self.deltas.per_block * size * fmt.bits // 8
        return unpack(fmt, self.rc.cache.get(offset)[lo : lo + size * fmt.bits // 8])

    def place(self, data: bytes) -> int:
        """Put ``data`` in the new area (refcount 1 once committed); return its offset.

        The offset is provisional until the commit chooses where the area goes:
        only ``commit``'s own arguments may hold it (they are moved with the area).
        """
        if not data:
            return 0
        offset = self._next * self.cs
        self._next += -(-len(data) // self.cs)
        self._payload.append((offset, data))
        return offset

    # --- the commit ----------------------------------------------------------------

    def commit(
        self, *, size: int, l1: array | None, l1_size: int, snapshots: int, table: bytes | None
    ) -> None:
        """Write everything, then the header naming it; reload the driver from the file.

        ``l1`` is the new active L1 table (None: the current one stays), ``table`` the
        new snapshot table (None: the current one stays; empty: no table).
        """
        h, cs = self.h, self.cs
        l1_slot = len(self._payload)  # (its entries are moved with the area once it is placed)
        l1_offset = self.place(bytes(8 * len(l1))) if l1 is not None else h.l1_table_offset
        table_offset = self.place(table) if table is not None else h.snapshots_offset
        count = self._next - self.area
        start, blocks, table_clusters = self._choose_area(count)
        shift = (start - self.area) * cs

        def moved(offset: int) -> int:
            return offset + shift if offset >= self.area * cs else offset

        self.reference(start, count, 1)
        for index in blocks:
            old = self.rc.block_offset(index)
            if old:
                self.reference(old // cs, 1, -1)
        self.reference(h.refcount_table_offset // cs, h.refcount_table_clusters, -1)
        self.reference(start + count, len(blocks) + table_clusters, 1)
        contents, freed = self._new_blocks(blocks)
        reftable = array("Q", self.rc.reftable)
        reftable.extend([0] * (table_clusters * cs // 8 - len(reftable)))
        for k, index in enumerate(blocks):
            reftable[index] = (start + count + k) * cs
        if l1:
            l1 = array("Q", [moved(e & L.L1E_OFFSET_MASK) | (e & L.OFLAG_COPIED) for e in l1])
            self._payload[l1_slot] = (l1_offset, table_to_bytes(l1))
        file = self.drv.node.file
        for offset, data in self._payload:
            file.pwrite(moved(offset), data)
        file.pwrite((start + count) * cs, b"".join(contents))
        reftable_offset = (start + count + len(blocks)) * cs
        file.pwrite(reftable_offset, table_to_bytes(reftable))
        file.flush()
        roots = _ROOTS.pack(
            size,
            h.crypt_method,
            l1_size,
            moved(l1_offset),
            reftable_offset,
            table_clusters,
            snapshots,
            moved(table_offset),
        )
        file.pwrite(24, roots)
        file.flush()
        log.debug(
            "%s: metadata switched (%d clusters at 0x%x, %d refcount blocks)",
            self.drv._name,
            count + len(blocks) + table_clusters,
            start * cs,
            len(blocks),
        )
        self.drv.reload_metadata()
        for first, run in _runs(freed):
            file.pdiscard(first * cs, run * cs)

    def _choose_area(self, count: int) -> tuple[int, list[int], int]:
        """Where the new area goes: the first run of free clusters large enough for the
        ``count`` placed ones, the refcount blocks and the table, else past everything.
        Returns its first cluster, the blocks to rewrite and the table's size."""
        rc = self.rc
        saved, rc.free_hint = rc.free_hint, 0
        try:
            need = count
            for _ in range(4):  # the blocks needed depend on where the area lies
                start = rc.find_free(need)
                if start >= self.area:
                    break
                blocks, table_clusters = self._changed_blocks(start, count)
                need = count + len(blocks) + table_clusters
                unused = not any(self.refcounts_after(list(range(start, start + need))))
                if unused and rc.find_free_at(start, need):  # (free, and not referenced)
                    return start, blocks, table_clusters
        finally:
            rc.free_hint = saved
        return (self.area, *self._changed_blocks(self.area, count))

    def _changed_blocks(self, start: int, count: int) -> tuple[list[int], int]:
        """The refcount blocks to rewrite, and the new refcount table's clusters, for an
        area at cluster ``start`` beginning with ``count`` placed clusters.

        Rewriting a block frees its old cluster, whose own block then changes; the new
        area may need blocks of its own: grow the set until it is stable.
        """
        epb, cs = self.rc.fmt.entries, self.cs
        old_rt = self.h.refcount_table_offset // cs
        last_rt = old_rt + self.h.refcount_table_clusters - 1
        changed = set(self.deltas.by_block()) | set(range(old_rt // epb, last_rt // epb + 1))
        while True:
            entries = max(len(self.rc.reftable), max(changed) + 1)
            table_clusters = -(-entries * 8 // cs)
            end = start + count + len(changed) + table_clusters
            wanted = changed | set(range(start // epb, (end - 1) // epb + 1))
            for index in changed:
                old = self.rc.block_offset(index)
                if old:
                    wanted.add(old // cs // epb)
            if wanted == changed:  # (then the table's size, computed from it, is right too)
                break
            changed = wanted
        if table_clusters * cs > L.MAX_REFTABLE_BYTES:
            raise ImageFormatError(
                f"qcow2 image '{self.drv._name}': refcount table would exceed its size limit"
            )
        return sorted(changed), table_clusters

    def _new_blocks(self, blocks: list[int]) -> tuple[list[bytes], list[int]]:
        """The new contents of ``blocks``; and the clusters whose refcount drops to zero."""
        fmt, epb, size = self.rc.fmt, self.rc.fmt.entries, self.deltas.chunk
        changes = self.deltas.by_block()
        contents: list[bytes] = []
        freed: list[int] = []
        for index in blocks:  # every block rewritten has changes
            old = self.rc.block_offset(index)
            block = bytearray(self.rc.cache.get(old)) if old else bytearray(self.cs)
            for chunk in changes[index]:
                first = chunk * size
                lo = (first - index * epb) * fmt.bits // 8
                hi = lo + size * fmt.bits // 8
                deltas = self.deltas.chunks[chunk]
                new = [v + d for v, d in zip(unpack(fmt, block[lo:hi]), deltas, strict=True)]
                if min(new) < 0:
                    bad = first + next(i for i, v in enumerate(new) if v < 0)
                    raise ImageFormatError(
                        f"qcow2 image '{self.drv._name}' is corrupt: "
                        f"refcount of cluster {bad} would drop below zero"
                    )
                packed = pack(fmt, array("Q", new))
                if packed is None:
                    raise SnapshotError(
                        errno.EINVAL,
                        f"'{self.drv._name}': a refcount would exceed the image's "
                        f"{fmt.bits}-bit refcount width",
                    )
                block[lo:hi] = packed
                freed += [first + i for i, d in enumerate(deltas) if d < 0 and not new[i]]
            contents.append(bytes(block))
        return contents, freed


def _runs(clusters: list[int]) -> list[tuple[int, int]]:
    """Sorted clusters as (first, count) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for cluster in sorted(clusters):
        if runs and runs[-1][0] + runs[-1][1] == cluster:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((cluster, 1))
    return runs
