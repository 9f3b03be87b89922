"""The write side of the qcow2 driver: allocation, copy on write, zeroes and discard.

A mixin of :class:`arctern_block_qcow2.driver.Qcow2Driver` (see there for the
ordering rules); it relies on the read side (:class:`ReadPath`) for the cluster
walk and for the bytes copied on write.
"""

from __future__ import annotations

from array import array
from contextlib import nullcontext

from arctern.block.copy import CopySource
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.mapping import Kind, entry_kind, host_clusters
from arctern_block_qcow2.serial import serialized

MAX_PENDING_FREES = 4096
#: Runs up to this size are written as one buffer when they need copy on write.
COW_MERGE_LIMIT = 1 << 20


def _unallocated_run(table: array, first: int, stop: int) -> int:
    """How many entries from ``first`` (before ``stop``) are 0, counted in C: 0 if the first is not.

    A run of unallocated clusters (a new image being filled) is written as one
    allocation without looking at each entry from Python.
    """
    if table[first]:
        return 0
    run = table[first:stop]
    if run.count(0) == len(run):
        return len(run)
    n = 1
    while n < len(run) and not run[n]:
        n += 1
    return n


class WritePath:
    """pwrite, pwrite_zeroes and pdiscard."""

    @serialized
    def pwrite(self, offset: int, data: memoryview) -> None:
        self._begin_write()
        for l1_index, start, end in self._segments(offset, len(data)):
            self._write_segment(l1_index, start, data[start - offset : end - offset])
        if len(self._pending_frees) > MAX_PENDING_FREES:
            self._apply_frees()

    def _write_mode(self, entry: int) -> tuple[str, int | None]:
        """How a write treats a cluster: in place, into its preallocated zero cluster, or new."""
        if entry & L.OFLAG_COPIED and not entry & L.OFLAG_COMPRESSED:
            if entry & L.OFLAG_ZERO:
                if entry & L.L2E_OFFSET_MASK:
                    return "zalloc", self._host(entry)
            elif entry & L.L2E_OFFSET_MASK:
                return "inplace", self._host(entry)
        return "new", None

    def _write_segment(self, l1_index: int, start: int, data: memoryview) -> None:
        cb, cs = self.h.cluster_bits, self.h.cluster_size
        base = l1_index << (cb - 3)
        end = start + len(data)
        l2_offset, _ = self.map.writable_l2(l1_index)
        c, last = start >> cb, (end - 1) >> cb
        while c <= last:
            table = self.map.cache.get(l2_offset)
            n = _unallocated_run(table, c - base, last - base + 1)
            if n:
                mode, host = "new", None
            else:
                mode, host = self._write_mode(table[c - base])
                n = 1
                while c + n <= last:
                    m2, h2 = self._write_mode(table[c + n - base])
                    if m2 != mode or (host is not None and h2 != host + (n << cb)):
                        break
                    n += 1
            rs, re = max(start, c << cb), min(end, (c + n) << cb)
            chunk = data[rs - start : re - start]
            if host is not None and host >= self.node.file.getlength():
                raise self.corruption(f"data cluster 0x{host:x} lies past the end of the file")
            if mode == "inplace":
                self._write_data(host + (rs - (c << cb)), chunk)
            else:
                if host is None:
                    target = self.refcounts.alloc(n)
                    guard = self.refcounts.released_on_error(target, n)
                else:
                    target, guard = host, nullcontext()
                with guard:
                    for delta, piece in self._with_cow(c, n, rs, re, chunk):
                        self._write_data(target + delta, piece)
                table = self.map.cache.get(l2_offset)
                first = c - base
                if mode == "new":
                    for old in table[first : first + n]:
                        if old:
                            self._free_entry(old)
                entry = target | L.OFLAG_COPIED
                table[first : first + n] = array("Q", range(entry, entry + n * cs, cs))
                self.map.cache.mark_dirty(l2_offset, table)
            c += n

    def _with_cow(
        self, c: int, n: int, rs: int, re: int, chunk: memoryview
    ) -> list[tuple[int, memoryview]]:
        """What to write for whole clusters [c, c+n) holding ``chunk`` at guest offset rs.

        Partial first and last clusters are completed with their current content
        (copy on write). The pieces are (offset into the run, bytes): one buffer for
        small runs; for large ones the two completed end clusters and ``chunk`` itself
        in between, so a big request is never copied.
        """
        cb = self.h.cluster_bits
        head, tail = rs - (c << cb), ((c + n) << cb) - re
        if not head and not tail:
            return [(0, chunk)]
        if n <= 2 or (n << cb) <= COW_MERGE_LIMIT:
            buf = memoryview(bytearray(n << cb))
            if head:
                self._read(c << cb, buf[:head])
            buf[head : head + len(chunk)] = chunk
            if tail:
                self._read(re, buf[len(buf) - tail :])
            return [(0, buf)]
        cs = 1 << cb
        pieces = []
        start = 0
        if head:
            first = memoryview(bytearray(cs))
            self._read(c << cb, first[:head])
            first[head:] = chunk[: cs - head]
            pieces.append((0, first))
            start = cs - head
        stop = len(chunk) - (cs - tail if tail else 0)
        pieces.append((head + start, chunk[start:stop]))
        if tail:
            last = memoryview(bytearray(cs))
            last[: cs - tail] = chunk[stop:]
            self._read(re, last[cs - tail :])
            pieces.append(((n - 1) << cb, last))
        return pieces

    def _write_data(self, host: int, data: memoryview) -> None:
        """Write guest data at ``host``, refusing to overwrite metadata (QEMU's overlap check)."""
        cb = self.h.cluster_bits
        first, end = host >> cb, ((host + len(data) - 1) >> cb) + 1
        clusters = range(first, end)
        if (
            self.refcounts.reserved_in(first, end) is not None
            or not self.map.l2_clusters.isdisjoint(clusters)
            or not self.refcounts.block_clusters.isdisjoint(clusters)
        ):
            raise self.corruption(f"data write at 0x{host:x} would overwrite image metadata")
        if isinstance(data, CopySource):  # an offloaded copy (copy_range_to)
            data.write_to(self.node.file, host)
        else:
            self.node.file.pwrite(host, data)
        self._unsynced = True

    def _free_entry(self, entry: int) -> None:
        held = host_clusters(entry, self.h.cluster_bits)
        if held:
            self._queue_free(*held)

    # --- zeroes and discard ---------------------------------------------------------

    def _whole_clusters(self, offset: int, length: int) -> tuple[int, int]:
        """The cluster-aligned part of a request (the end of the image counts as aligned)."""
        cs = self.h.cluster_size
        end = offset + length
        if end >= self.h.size:
            end = -(-end // cs) * cs
        return -(-offset // cs) * cs, end // cs * cs

    @serialized
    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        if self.h.version < 3:
            super().pwrite_zeroes(offset, length, may_unmap=may_unmap)
            return
        self._begin_write()
        start, stop = self._whole_clusters(offset, length)
        if stop <= start:
            super().pwrite_zeroes(offset, length)
            return
        if offset < start:
            super().pwrite_zeroes(offset, start - offset)
        self._update_entries(start, stop, lambda old: self._zeroed_entry(old, may_unmap))
        if stop < offset + length:
            super().pwrite_zeroes(stop, offset + length - stop)
        self._apply_frees()

    def _zeroed_entry(self, old: int, may_unmap: bool) -> int:
        kind = entry_kind(old)
        if kind is Kind.COMPRESSED or (may_unmap and kind in (Kind.NORMAL, Kind.ZERO_ALLOC)):
            return L.OFLAG_ZERO
        return old | L.OFLAG_ZERO

    @serialized
    def pdiscard(self, offset: int, length: int) -> None:
        self._begin_write()
        start, stop = self._whole_clusters(offset, length)
        if stop > start:
            has_backing = getattr(self.node, "backing", None) is not None
            self._update_entries(start, stop, self._discarded_entry, allocate_l2=has_backing)
        self._apply_frees(discard=True)

    @serialized
    def make_empty(self) -> None:
        """Unallocate every cluster (even over a backing file) and free what they held."""
        self._begin_write()
        start, stop = self._whole_clusters(0, self.h.size)
        if stop > start:
            self._update_entries(start, stop, lambda _old: 0, allocate_l2=False)
        self._apply_frees(discard=True)

    def _discarded_entry(self, old: int) -> int:
        kind = entry_kind(old)
        has_backing = getattr(self.node, "backing", None) is not None
        if has_backing or kind in (Kind.NORMAL, Kind.ZERO_ALLOC, Kind.COMPRESSED):
            return L.OFLAG_ZERO if self.h.version >= 3 else 0
        return 0

    def _update_entries(
        self, start: int, stop: int, new_entry, *, allocate_l2: bool = True
    ) -> None:
        """Rewrite the L2 entries of whole clusters [start, stop); queue frees of old clusters.

        Without ``allocate_l2``, stretches with no L2 table are left alone.
        """
        cb = self.h.cluster_bits
        for l1_index, s, e in self._segments(start, stop - start):
            if not allocate_l2 and not self.map.l2_offset(l1_index):
                continue
            l2_offset, table = self.map.writable_l2(l1_index)
            base = l1_index << (cb - 3)
            lo, hi = (s >> cb) - base, (e >> cb) - base
            part = table[lo:hi]
            first = part[0]
            if part.count(first) == len(part) and host_clusters(first, cb) is None:
                # One value throughout (e.g. never written): nothing to free, bulk rewrite.
                table[lo:hi] = array("Q", [new_entry(first)]) * len(part)
                self.map.cache.mark_dirty(l2_offset, table)
                continue
            for i in range(lo, hi):
                old = table[i]
                new = new_entry(old)
                if new != old:
                    table[i] = new
                    if (
                        new & L.L2E_OFFSET_MASK != old & L.L2E_OFFSET_MASK
                        or entry_kind(old) is Kind.COMPRESSED
                    ):
                        self._free_entry(old)
            self.map.cache.mark_dirty(l2_offset, table)
