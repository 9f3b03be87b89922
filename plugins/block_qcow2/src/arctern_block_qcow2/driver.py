"""The qcow2 format driver (versions 2 and 3).

Metadata ordering, which keeps the image consistent at every instant
(a crash may leak clusters, never corrupt):

* refcounts reach the disk before an L2 entry that uses the cluster, and
  guest data reaches the disk before the L2 entry that points to it: the L2
  cache's ordering hook writes the refcount blocks and flushes the file
  before any L2 table is written;
* a new L2 table reaches the disk before the L1 entry that points to it
  (:meth:`ClusterMap.writable_l2`);
* frees go the other way: a cluster whose last reference was dropped is
  queued, and its refcount is decreased only after the L2 tables that no
  longer point to it are on disk (:meth:`Qcow2Driver._apply_frees`).

With lazy refcounts the image is marked dirty on the first write and the
refcount ordering is relaxed; a dirty image is repaired (like
``qemu-img check -r all``) before it is written again.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, ClassVar

from arctern.block.driver import (
    STATUS_ALLOCATED,
    STATUS_COMPRESSED,
    STATUS_DATA,
    STATUS_OFFSET_VALID,
    STATUS_RECURSE,
    STATUS_ZERO,
    BlockDriver,
    BlockStatus,
    CheckResult,
    ImageInfo,
)
from arctern.errors import (
    BlockError,
    ImageFormatError,
    InactiveError,
    OutOfRangeError,
    ReadOnlyError,
)
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.compress import compressed_extent, decompress_cluster
from arctern_block_qcow2.header import Header, parse_header
from arctern_block_qcow2.mapping import ClusterMap, Kind, entry_kind, host_clusters, reserved_ranges
from arctern_block_qcow2.options import parse_bool, parse_size
from arctern_block_qcow2.refcount import Refcounts
from arctern_block_qcow2.snapshots import Snapshot, read_snapshots

log = logging.getLogger(__name__)

DEFAULT_L2_CACHE_MAX = 32 << 20  # QEMU's DEFAULT_L2_CACHE_MAX_SIZE on Linux
DEFAULT_REFCOUNT_CACHE_CLUSTERS = 4  # QEMU's MIN_REFCOUNT_CACHE_SIZE
MAX_PENDING_FREES = 4096
#: Runs up to this size are written as one buffer when they need copy on write.
COW_MERGE_LIMIT = 1 << 20
PREALLOCATION_MODES = ("off", "metadata", "falloc", "full")

_ZERO_KINDS = (Kind.ZERO_PLAIN, Kind.ZERO_ALLOC)


class Qcow2Driver(BlockDriver):
    """qcow2 format driver: QEMU's on-disk format, read and write."""

    name = "qcow2"
    create_options: ClassVar[dict[str, str]] = {
        "compat": "Compatibility level (v2 [0.10] or v3 [1.1])",
        "backing_file": "File name of a base image",
        "backing_fmt": "Image format of the base image",
        "cluster_size": "qcow2 cluster size",
        "preallocation": "Preallocation mode (allowed values: off, metadata, falloc, full)",
        "lazy_refcounts": "Postpone refcount updates",
        "refcount_bits": "Width of a reference count entry in bits",
        "compression_type": "Compression method used for image cluster compression",
        "extended_l2": "Extended L2 tables (not supported)",
    }

    h: Header

    # --- class-level ----------------------------------------------------------

    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        if header[:4] == L.MAGIC and len(header) >= 8:
            return 100 if int.from_bytes(header[4:8], "big") in (2, 3) else 0
        return 0

    @classmethod
    def create(cls, file, size: int, options: dict[str, Any]) -> None:
        from arctern_block_qcow2.create import create_image

        create_image(cls, file, size, options)

    # --- open / close -----------------------------------------------------------

    def open(self, options: dict[str, Any]) -> None:
        self._options = dict(getattr(self.node, "options", None) or {})
        self._options.update(options or {})
        self._load()
        if not self.node.read_only and self.h.corrupt:
            raise ImageFormatError(
                f"qcow2 image '{self._name}' is corrupt; cannot be opened read/write "
                "(repair it with 'qemu-img check -r all')"
            )

    def _load(self) -> None:
        """Read header, extensions, snapshot list, L1 and refcount table; write nothing."""
        file = self.node.file
        self._name = str(self.node.filename)
        length = file.getlength()
        first = bytearray(min(length, 512))
        file.pread(0, memoryview(first))
        cluster_bits = int.from_bytes(first[20:24], "big") if len(first) >= 24 else 0
        data = first
        if L.MIN_CLUSTER_BITS <= cluster_bits <= L.MAX_CLUSTER_BITS:
            data = bytearray(min(length, 1 << cluster_bits))
            file.pread(0, memoryview(data))
        self.h = h = parse_header(data, length, self._name)
        self.snapshots: list[Snapshot] = []
        self.snapshot_table_bytes = snap_bytes = 0
        if h.nb_snapshots:
            self.snapshots, snap_bytes = read_snapshots(
                file, h.snapshots_offset, h.nb_snapshots, h.cluster_size, self._name, length
            )
            self.snapshot_table_bytes = snap_bytes
        self.lazy = h.lazy_refcounts
        if "lazy-refcounts" in self._options:
            self.lazy = parse_bool("lazy-refcounts", self._options["lazy-refcounts"])
            if self.lazy and h.version < 3:
                raise BlockError(f"'{self._name}': lazy refcounts require a qcow2 v3 image")
        l2_cache, rc_cache = self._cache_sizes()
        self.refcounts = Refcounts(file, h, self._name, rc_cache)
        self.refcounts.reserved = reserved_ranges(h)
        if snap_bytes:
            first_snap = h.snapshots_offset >> h.cluster_bits
            self.refcounts.reserved.append(
                (first_snap, first_snap + -(-snap_bytes // h.cluster_size))
            )
        self.map = ClusterMap(
            file, h, self.refcounts, self._name, l2_cache, self._before_l2_store, self._queue_free
        )
        self.backing_filename = h.backing_file
        self.backing_format = h.backing_format
        self._pending_frees: list[tuple[int, int]] = []
        self._unsynced = False
        self._write_ready = False
        self._broken = False
        self._last_compressed: tuple[int, bytes] | None = None
        self._metadata_preallocated: bool | None = None

    def _cache_sizes(self) -> tuple[int, int]:
        cs = self.h.cluster_size
        needed = -(-self.h.size // cs) * 8
        l2_bytes = min(-(-needed // cs) * cs, DEFAULT_L2_CACHE_MAX)
        if "l2-cache-size" in self._options:
            l2_bytes = parse_size("l2-cache-size", self._options["l2-cache-size"])
        rc_bytes = DEFAULT_REFCOUNT_CACHE_CLUSTERS * cs
        if "refcount-cache-size" in self._options:
            rc_bytes = parse_size("refcount-cache-size", self._options["refcount-cache-size"])
        return max(2, l2_bytes // cs), max(2, rc_bytes // cs)

    def close(self) -> None:
        if self._can_write() and not self._broken:
            self.flush()
        self.map.cache.clear()
        self.refcounts.cache.clear()

    def invalidate_cache(self) -> None:
        self.map.cache.clear()
        self.refcounts.cache.clear()
        self._load()
        if not self.node.read_only and self.h.corrupt:
            raise ImageFormatError(f"qcow2 image '{self._name}' is corrupt; cannot activate it")

    def getlength(self) -> int:
        return self.h.size

    def _can_write(self) -> bool:
        return bool(self.node.active) and not self.node.read_only

    # --- ordering machinery -------------------------------------------------------

    def _before_l2_store(self) -> None:
        """Refcounts and guest data reach the disk before any L2 table."""
        wrote = False if self.lazy else self.refcounts.flush()
        if wrote or self._unsynced:
            self.node.file.flush()
            self._unsynced = False

    def _queue_free(self, first: int, count: int) -> None:
        self._pending_frees.append((first, count))

    def _apply_frees(self, *, discard: bool = False) -> None:
        """Drop the queued references once the tables that dropped them are on disk."""
        if not self._pending_frees:
            return
        self.map.cache.flush()
        self.node.file.flush()
        pending, self._pending_frees = self._pending_frees, []
        freed: list[int] = []
        for first, count in pending:
            freed += self.refcounts.update(first, count, -1)
        if discard:
            for cluster in freed:
                self.node.file.pdiscard(cluster << self.h.cluster_bits, self.h.cluster_size)

    def _begin_write(self) -> None:
        if not self.node.active:
            raise InactiveError(f"'{self._name}' is inactive; it cannot be written")
        if self.node.read_only:
            raise ReadOnlyError(f"'{self._name}' is opened read-only")
        if self._broken or self.h.corrupt:
            raise ImageFormatError(f"qcow2 image '{self._name}' is marked corrupt")
        if not self._write_ready:
            self._prepare_for_writes()
        if self.lazy and not self.h.dirty:
            self._set_incompatible(self.h.incompatible_features | L.INCOMPAT_DIRTY)

    def _prepare_for_writes(self) -> None:
        """First write of this open (or activation): repair a dirty image, clear autoclear bits."""
        self._write_ready = True
        if self.h.dirty:
            log.warning("%s: image was not closed cleanly; repairing refcounts", self._name)
            self.check("all")
        if self.h.version >= 3 and self.h.autoclear_features:
            self.node.file.pwrite(88, bytes(8))
            self.h.autoclear_features = 0

    def _set_incompatible(self, value: int) -> None:
        self.node.file.pwrite(72, value.to_bytes(8, "big"))
        self.node.file.flush()
        self.h.incompatible_features = value

    def corruption(self, msg: str) -> ImageFormatError:
        """Mark the image corrupt (when we may write) and return the error to raise."""
        if self._can_write() and self.h.version >= 3 and not self.h.corrupt:
            self._set_incompatible(self.h.incompatible_features | L.INCOMPAT_CORRUPT)
            self._broken = True
            log.error("%s: marked corrupt: %s", self._name, msg)
        return ImageFormatError(f"qcow2 image '{self._name}' is corrupt: {msg}")

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

        A run is a stretch of one kind; for data clusters also contiguous on the host.
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
            n = 1
            if kind is Kind.NORMAL:
                host = self._host(entry)
                while c + n <= last:
                    nxt = table[c + n - base]
                    if entry_kind(nxt) is not Kind.NORMAL or nxt & L.L2E_OFFSET_MASK != host + (
                        n << cb
                    ):
                        break
                    n += 1
            elif kind is not Kind.COMPRESSED:
                host = None
                zero = kind in _ZERO_KINDS
                while c + n <= last:
                    nk = entry_kind(table[c + n - base])
                    if nk is Kind.NORMAL or nk is Kind.COMPRESSED or (nk in _ZERO_KINDS) != zero:
                        break
                    n += 1
            else:
                host = None
            yield kind, entry, host, max(start, c << cb), min(end, (c + n) << cb)
            c += n

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

    # --- writing ---------------------------------------------------------------

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
            mode, host = self._write_mode(table[c - base])
            n = 1
            while c + n <= last:
                m2, h2 = self._write_mode(table[c + n - base])
                if m2 != mode or (host is not None and h2 != host + (n << cb)):
                    break
                n += 1
            rs, re = max(start, c << cb), min(end, (c + n) << cb)
            chunk = data[rs - start : re - start]
            if mode == "inplace":
                self._write_data(host + (rs - (c << cb)), chunk)
            else:
                target = host if host is not None else self.refcounts.alloc(n)
                for delta, piece in self._with_cow(c, n, rs, re, chunk):
                    self._write_data(target + delta, piece)
                table = self.map.cache.get(l2_offset)
                for k in range(n):
                    old = table[c + k - base]
                    table[c + k - base] = (target + k * cs) | L.OFLAG_COPIED
                    if mode == "new":
                        self._free_entry(old)
                self.map.cache.mark_dirty(l2_offset)
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

    def pdiscard(self, offset: int, length: int) -> None:
        self._begin_write()
        start, stop = self._whole_clusters(offset, length)
        if stop > start:
            has_backing = getattr(self.node, "backing", None) is not None
            self._update_entries(start, stop, self._discarded_entry, allocate_l2=has_backing)
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
            for i in range((s >> cb) - base, (e >> cb) - base):
                old = table[i]
                new = new_entry(old)
                if new != old:
                    table[i] = new
                    if (
                        new & L.L2E_OFFSET_MASK != old & L.L2E_OFFSET_MASK
                        or entry_kind(old) is Kind.COMPRESSED
                    ):
                        self._free_entry(old)
            self.map.cache.mark_dirty(l2_offset)

    # --- flush --------------------------------------------------------------------

    def flush(self) -> None:
        if not self._can_write() or self._broken:
            return
        self._writeback()
        self.node.file.flush()

    def _writeback(self) -> None:
        """Write every cached table in order, apply queued frees, then mark the image clean."""
        self.map.cache.flush()
        self._apply_frees()
        if self.refcounts.flush():
            self.node.file.flush()
        if self.h.dirty and self._write_ready:
            self._set_incompatible(self.h.incompatible_features & ~L.INCOMPAT_DIRTY)

    # --- status, info, check, resize ------------------------------------------------

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
        if kind in _ZERO_KINDS:
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

    def info(self) -> ImageInfo:
        h = self.h
        data: dict[str, Any] = {
            "compat": "1.1" if h.version >= 3 else "0.10",
            "compression-type": L.COMPRESSION_NAMES[h.compression_type],
        }
        if h.version >= 3:
            data["lazy-refcounts"] = h.lazy_refcounts
        data["refcount-bits"] = h.refcount_bits
        if h.version >= 3:
            data["corrupt"] = h.corrupt
            data["extended-l2"] = False
        return ImageInfo(
            cluster_size=h.cluster_size,
            dirty=h.dirty,
            format_specific={"type": "qcow2", "data": data},
            backing_filename=h.backing_file,
            backing_format=h.backing_format,
            snapshots=[s.as_info() for s in self.snapshots],
        )

    def check(self, fix: str = "") -> CheckResult:
        from arctern_block_qcow2.check import check_image

        if fix and not self._can_write():
            raise BlockError(f"'{self._name}': repairing needs an active, writable image")
        if self._can_write():
            self._writeback_tables()
        result = check_image(self, fix)
        if fix == "all" and self.h.dirty and not result.corruptions:
            self._set_incompatible(self.h.incompatible_features & ~L.INCOMPAT_DIRTY)
        return result

    def _writeback_tables(self) -> None:
        self.map.cache.flush()
        self._apply_frees()
        self.refcounts.flush()

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

    def _zero_tail(self, old: int, new: int) -> None:
        """Make the rest of a partial last cluster read as zeroes before the image grows.

        (After a shrink, or with a backing file, it may hold old bytes; unlike QEMU,
        which shows them again, the grown area reads as zeroes.)
        """
        stop = min(new, -(-old // self.h.cluster_size) * self.h.cluster_size)
        if stop <= old:
            return
        status = self.block_status(old - 1, 1)
        backing = getattr(self.node, "backing", None) is not None
        if status.flags & STATUS_DATA or (not status.flags and backing):
            self.pwrite(old, memoryview(bytes(stop - old)))

    def _shrink(self, size: int) -> None:
        """Drop every cluster past ``size``, then the L2 tables wholly past it (QEMU's order)."""
        if self.snapshots:
            raise BlockError(f"'{self._name}': Can't resize an image which has snapshots")
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
                file.truncate(host_end, preallocation=file_mode)
            table = self.map.cache.get(l2_offset)
            for k, i in enumerate(todo):
                self._free_entry(table[i])
                table[i] = (host + (k << cb)) | L.OFLAG_COPIED
            self.map.cache.mark_dirty(l2_offset)
        self._writeback_tables()
