"""Resizing a qcow2 image: growth (with preallocation) and shrinking.

A mixin of :class:`arctern_block_qcow2.driver.Qcow2Driver`.
"""

from __future__ import annotations

import struct

from arctern.block.driver import STATUS_DATA
from arctern.errors import BlockError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.serial import serialized

PREALLOCATION_MODES = ("off", "metadata", "falloc", "full")


class Resize:
    """truncate(): grow the L1 table and preallocate, or drop clusters and tables."""

    @serialized
    def truncate(self, size: int, *, preallocation: str = "off") -> None:
        if preallocation not in PREALLOCATION_MODES:
            raise BlockError(f"unsupported preallocation mode '{preallocation}'")
        if size % L.SECTOR:
            raise BlockError(f"'{self._name}': The new size must be a multiple of 512")
        self._begin_write()
        old = self.h.size
        if size < old:
            if preallocation != "off":
                raise BlockError("Preallocation can only be used when growing an image")
            self._shrink(size)
            return
        needed_l1 = -(-size // (self.h.cluster_size << (self.h.cluster_bits - 3)))
        if needed_l1 > len(self.map.l1):
            self.map.grow_l1(needed_l1)
        self._zero_tail(old, size)
        if preallocation != "off":
            self._preallocate(old, size, preallocation)
        self.node.file.pwrite(24, struct.pack(">Q", size))
        self.h.size = size
        self.node.file.flush()
        backing = getattr(self.node, "backing", None)
        if backing is not None and backing.getlength() > old:
            # The grown area must not show the backing file's bytes (QEMU's ZERO_WRITE).
            self.pwrite_zeroes(old, min(size, backing.getlength()) - old)

    def _zero_tail(self, old: int, new: int) -> None:
        """Make the rest of an allocated partial last cluster read as zeroes before growing.

        (After a shrink it may hold old bytes; unlike QEMU, which shows them again,
        the grown area reads as zeroes.)
        """
        stop = min(new, -(-old // self.h.cluster_size) * self.h.cluster_size)
        if stop > old and self.block_status(old - 1, 1).flags & STATUS_DATA:
            self.pwrite(old, memoryview(bytes(stop - old)))

    def _shrink(self, size: int) -> None:
        """Drop every cluster past ``size``, then the L2 tables wholly past it (QEMU's order).

        Internal snapshots keep what they reference: a table they share is copied
        before it changes (``writable_l2``) and every free only drops the active
        image's reference, as QEMU 7.2 shrinks such images.
        """
        cs = self.h.cluster_size
        start = -(-size // cs) * cs
        end = -(-self.h.size // cs) * cs
        if end > start:
            self._update_entries(start, end, lambda old: 0, allocate_l2=False)
        self._apply_frees(discard=True)
        self.node.file.pwrite(24, struct.pack(">Q", size))
        self.node.file.flush()
        self.h.size = size
        first_unused = -(-size // (cs << (self.h.cluster_bits - 3)))
        dropped = []
        for l1_index in range(first_unused, len(self.map.l1)):
            l2_offset = self.map.l2_offset(l1_index)
            if l2_offset:
                self.map.set_l1_entry(l1_index, 0)
                self.map.cache.forget(l2_offset)
                self.map.l2_clusters.discard(l2_offset >> self.h.cluster_bits)
                dropped.append(l2_offset >> self.h.cluster_bits)
        if dropped:
            self.node.file.flush()
            for cluster in dropped:
                self.refcounts.update(cluster, 1, -1)
        self.refcounts.flush()
        self.node.file.flush()
        end = (self.refcounts.last_used_cluster() + 1) * cs
        if end < self.node.file.getlength():  # give the freed tail back, as QEMU does
            self.node.file.truncate(end)

    def _preallocate(self, start: int, end: int, mode: str) -> None:
        """Allocate data clusters (and their L2 tables) for [start, end) at the end of the file.

        Each run of data clusters is allocated right after the file's current end and
        the file is extended over it at once (fallocated or zero-written for
        falloc/full), before the next L2 table is placed after it.
        """
        cb = self.h.cluster_bits
        file = self.node.file
        file_mode = "off" if mode == "metadata" else mode
        self.refcounts.free_hint = max(self.refcounts.free_hint, -(-file.getlength() >> cb))
        for l1_index, s, e in self._segments(start, end - start):
            l2_offset, table = self.map.writable_l2(l1_index)
            base = l1_index << (cb - 3)
            first, stop = (s >> cb) - base, ((e - 1) >> cb) - base + 1
            todo = [i for i in range(first, stop) if not table[i] & L.L2E_OFFSET_MASK]
            if not todo:
                continue
            host = self.refcounts.alloc(len(todo))
            host_end = host + (len(todo) << cb)
            if host_end > file.getlength():
                with self.refcounts.released_on_error(host, len(todo)):
                    file.truncate(host_end, preallocation=file_mode)
            table = self.map.cache.get(l2_offset)
            for k, i in enumerate(todo):
                self._free_entry(table[i])
                table[i] = (host + (k << cb)) | L.OFLAG_COPIED
            self.map.cache.mark_dirty(l2_offset, table)
        self._writeback_tables()
