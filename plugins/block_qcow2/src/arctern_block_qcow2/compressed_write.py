"""Writing compressed clusters (``arctern-img convert -c``), as QEMU's qcow2 does.

Each whole cluster is compressed on its own; the compressed bytes are packed
one after the other into host clusters (a host cluster holding parts of N
compressed clusters has refcount N). A cluster that does not shrink is
written normally, and an all-zero cluster that is still unallocated in an
image without a backing file is left so. A mixin of :class:`arctern_block_qcow2.driver.Qcow2Driver`.
"""

from __future__ import annotations

from arctern_block_qcow2.compress import compress_cluster, compressed_entry
from arctern_block_qcow2.serial import serialized


class CompressedWrite:
    """pwrite_compressed(): the optional driver call arctern-img convert -c uses."""

    #: (host offset where the next compressed bytes may go, end of that host cluster).
    #: Forgotten whenever refcounts drop (the cluster could be freed and reused).
    _compressed_tail: tuple[int, int] | None = None

    @serialized
    def pwrite_compressed(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset``, whole clusters compressed.

        Parts of clusters at either end (unless they end the image) are written
        normally: a cluster is compressed only when all of it is known.
        """
        cs = self.h.cluster_size
        end = offset + len(data)
        first = -(-offset // cs) * cs
        last = end if end == self.h.size else end // cs * cs
        if last <= first:
            self.pwrite(offset, data)
            return
        self._begin_write()
        if offset < first:
            self.pwrite(offset, data[: first - offset])
        no_backing = getattr(self.node, "backing", None) is None
        for start in range(first, last, cs):
            view = data[start - offset : min(last, start + cs) - offset]
            piece = bytes(view).ljust(cs, b"\0")
            if no_backing and piece.count(0) == cs and self._unallocated(start):
                continue
            packed = compress_cluster(piece, self.h.compression_type)
            if len(packed) >= cs:
                self.pwrite(start, view)
            else:
                self._store_compressed(start, packed)
        if last < end:
            self.pwrite(last, data[last - offset :])

    def _unallocated(self, guest: int) -> bool:
        return not self.block_status(guest, 1).flags

    def _store_compressed(self, guest: int, packed: bytes) -> None:
        """Put ``packed`` after the previous compressed cluster, or in a fresh host cluster."""
        cb, size = self.h.cluster_bits, len(packed)
        l1_index = guest >> (2 * cb - 3)
        l2_offset, _ = self.map.writable_l2(l1_index)
        tail = self._compressed_tail
        if tail and tail[1] - tail[0] >= size:
            host, end = tail
            self.refcounts.update(host >> cb, 1, 1)  # one more compressed cluster inside
        else:
            host = self.refcounts.alloc(1)
            end = host + self.h.cluster_size
        with self.refcounts.released_on_error(host, 1):  # the reference just taken
            self._write_data(host, memoryview(packed))
        self._compressed_tail = (host + size, end) if host + size < end else None
        table = self.map.cache.get(l2_offset)
        index = (guest >> cb) - (l1_index << (cb - 3))
        self._free_entry(table[index])
        table[index] = compressed_entry(host, size, cb)
        self.map.cache.mark_dirty(l2_offset, table)
