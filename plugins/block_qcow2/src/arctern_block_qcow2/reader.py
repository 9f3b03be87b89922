"""The read side of the qcow2 driver: guest offsets to runs of clusters, and their bytes.

A mixin of :class:`arctern_block_qcow2.driver.Qcow2Driver`, which provides ``h``
(the header), ``map`` (L1 and the L2 cache), ``refcounts``, ``node`` and
``corruption()``.
"""

from __future__ import annotations

from arctern.block.driver import (
    STATUS_ALLOCATED,
    STATUS_COMPRESSED,
    STATUS_DATA,
    STATUS_OFFSET_VALID,
    STATUS_RECURSE,
    STATUS_ZERO,
    BlockStatus,
)
from arctern.errors import OutOfRangeError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.compress import compressed_extent, decompress_cluster
from arctern_block_qcow2.mapping import Kind, entry_kind
from arctern_block_qcow2.serial import serialized

_MAPPED_KINDS = (Kind.NORMAL, Kind.ZERO_ALLOC)


class ReadPath:
    """Reading, block status and the cluster walk the write side shares."""

    def _host(self, entry: int) -> int:
        host = entry & L.L2E_OFFSET_MASK
        if host & (self.h.cluster_size - 1):
            raise self.corruption(f"data cluster offset 0x{host:x} is not cluster aligned")
        return host

    # --- reading ---------------------------------------------------------------

    def _segments(self, offset: int, length: int):
        """Split [offset, offset+length) at L2 table boundaries: (l1_index, start, end)."""
        shift = self.h.cluster_bits * 2 - 3
        end = offset + length
        while offset < end:
            l1_index = offset >> shift
            stop = min(end, (l1_index + 1) << shift)
            if l1_index >= len(self.map.l1) and offset < self.h.size:
                raise self.corruption(f"guest offset 0x{offset:x} is not covered by the L1 table")
            yield l1_index, offset, stop
            offset = stop

    def _runs(self, table, l1_index: int, start: int, end: int):
        """Group the clusters of [start, end) into runs: (kind, entry, host, start, end).

        A run is a stretch of one kind; for clusters with a host offset (data and
        preallocated zero clusters) also contiguous on the host.
        """
        if table is None:  # no L2 table: the whole stretch is unallocated
            yield Kind.UNALLOCATED, 0, None, start, end
            return
        cb = self.h.cluster_bits
        base = l1_index << (cb - 3)
        c, last = start >> cb, (end - 1) >> cb
        while c <= last:
            entry = table[c - base]
            kind = entry_kind(entry)
            host = self._host(entry) if kind in _MAPPED_KINDS else None
            n = 1
            if kind is not Kind.COMPRESSED:
                while c + n <= last:
                    nxt = table[c + n - base]
                    if entry_kind(nxt) is not kind or (
                        host is not None and nxt & L.L2E_OFFSET_MASK != host + (n << cb)
                    ):
                        break
                    n += 1
            yield kind, entry, host, max(start, c << cb), min(end, (c + n) << cb)
            c += n

    @serialized
    def pread(self, offset: int, buf: memoryview) -> None:
        self._read(offset, buf)

    def _read(self, offset: int, buf: memoryview) -> None:
        cb = self.h.cluster_bits
        for l1_index, start, end in self._segments(offset, len(buf)):
            table = self.map.l2_table(l1_index)
            for kind, entry, host, rs, re in self._runs(table, l1_index, start, end):
                part = buf[rs - offset : re - offset]
                if kind is Kind.NORMAL:
                    self.node.file.pread(host + (rs & ((1 << cb) - 1)), part)
                elif kind is Kind.UNALLOCATED:
                    self._read_backing(rs, part)
                elif kind is Kind.COMPRESSED:
                    data = self._decompressed(entry)
                    within = rs & ((1 << cb) - 1)
                    part[:] = data[within : within + len(part)]
                else:
                    part[:] = bytes(len(part))

    def _read_backing(self, offset: int, buf: memoryview) -> None:
        backing = getattr(self.node, "backing", None)
        have = 0
        if backing is not None:
            have = max(0, min(len(buf), backing.getlength() - offset))
            if have:
                backing.pread(offset, buf[:have])
        if have < len(buf):
            buf[have:] = bytes(len(buf) - have)

    def _decompressed(self, entry: int) -> bytes:
        if self._last_compressed and self._last_compressed[0] == entry:
            return self._last_compressed[1]
        offset, length = compressed_extent(entry, self.h.cluster_bits)
        raw = bytearray(length)
        self.node.file.pread(offset, memoryview(raw))
        data = decompress_cluster(
            bytes(raw),
            self.h.cluster_size,
            self.h.compression_type,
            f"qcow2 image '{self._name}' at 0x{offset:x}",
        )
        self._last_compressed = (entry, data)
        return data

    @serialized
    def block_status(self, offset: int, length: int) -> BlockStatus:
        length = min(length, self.h.size - offset)
        if length <= 0:
            raise OutOfRangeError(
                f"'{self._name}': block status asked at 0x{offset:x}, past the end of the image"
            )
        l1_index, start, end = next(self._segments(offset, length))
        table = self.map.l2_table(l1_index)
        kind, _, host, rs, re = next(self._runs(table, l1_index, start, end))
        within = rs & (self.h.cluster_size - 1)
        if kind is Kind.NORMAL:
            flags = STATUS_DATA | STATUS_ALLOCATED | STATUS_OFFSET_VALID
            if self._metadata_preallocated is None:
                self._metadata_preallocated = self._detect_metadata_preallocation()
            if self._metadata_preallocated:
                flags |= STATUS_RECURSE  # the file may have holes under the data: ask it
            return BlockStatus(flags, re - rs, host + within)
        if kind is Kind.COMPRESSED:
            return BlockStatus(STATUS_DATA | STATUS_ALLOCATED | STATUS_COMPRESSED, re - rs)
        if kind is Kind.ZERO_ALLOC:  # preallocated: QEMU reports where it lies
            return BlockStatus(
                STATUS_ZERO | STATUS_ALLOCATED | STATUS_OFFSET_VALID, re - rs, host + within
            )
        if kind is Kind.ZERO_PLAIN:
            return BlockStatus(STATUS_ZERO | STATUS_ALLOCATED, re - rs)
        return BlockStatus(0, re - rs)

    def _detect_metadata_preallocation(self) -> bool:
        """QEMU's heuristic: far more clusters in use than the file really occupies."""
        actual = self.node.file.actual_size()
        if actual is None:
            return False
        cs, rc = self.h.cluster_size, self.refcounts
        real_clusters = actual // cs
        threshold = max(real_clusters * 10 // 9, real_clusters + 2)
        end_cluster = -(-self.node.file.getlength() // cs)
        in_use = 0
        for rt_index in range(-(-end_cluster // rc.fmt.entries)):
            offset = rc.block_offset(rt_index)
            if offset:
                in_use += rc.fmt.count_nonzero(rc.cache.get(offset))
                if in_use >= threshold:
                    return True
        return False
