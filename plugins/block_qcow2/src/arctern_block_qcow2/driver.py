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
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from arctern.block.driver import (
    BlockDriver,
    CheckResult,
    ImageInfo,
)
from arctern.errors import (
    BlockError,
    ImageFormatError,
    InactiveError,
    ReadOnlyError,
    UsageError,
)
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.compressed_write import CompressedWrite
from arctern_block_qcow2.copy_range import CopyRange
from arctern_block_qcow2.header import Header, parse_header
from arctern_block_qcow2.mapping import ClusterMap, reserved_ranges
from arctern_block_qcow2.options import parse_bool, parse_size
from arctern_block_qcow2.reader import ReadPath
from arctern_block_qcow2.refcount import Refcounts
from arctern_block_qcow2.resize import Resize
from arctern_block_qcow2.serial import serialized
from arctern_block_qcow2.snapshot_ops import InternalSnapshots
from arctern_block_qcow2.writer import WritePath

if TYPE_CHECKING:
    from arctern_block_qcow2.snapshots import Snapshot

log = logging.getLogger(__name__)

DEFAULT_L2_CACHE_MAX = 32 << 20  # QEMU's DEFAULT_L2_CACHE_MAX_SIZE on Linux
DEFAULT_REFCOUNT_CACHE_CLUSTERS = 4  # QEMU's MIN_REFCOUNT_CACHE_SIZE


class Qcow2Driver(
    ReadPath, WritePath, CompressedWrite, CopyRange, Resize, InternalSnapshots, BlockDriver
):
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

    def __init__(self, node) -> None:
        super().__init__(node)
        self._lock = threading.RLock()

    # --- class-level ----------------------------------------------------------

    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        # The magic alone claims the image, as QEMU's probe does: an unsupported version
        # is then refused by open, never mistaken for raw (whose writes would destroy it).
        return 100 if header[:4] == L.MAGIC else 0

    @classmethod
    def create(cls, file, size: int, options: dict[str, Any]) -> None:
        from arctern_block_qcow2.create import create_image

        create_image(cls, file, size, options)

    @classmethod
    def measure(cls, size, options, data, bitmaps) -> dict[str, int]:
        from arctern_block_qcow2.measure import measure

        return measure(size, options, data, bitmaps)

    # --- open / close -----------------------------------------------------------

    def open(self, options: dict[str, Any]) -> None:
        self._options = dict(getattr(self.node, "options", None) or {})
        self._options.update(options or {})
        self._load()
        if not self.node.read_only and self.h.corrupt and not self.node.for_repair:
            raise ImageFormatError(
                f"qcow2 image '{self._name}' is corrupt; cannot be opened read/write "
                "(repair it with 'qemu-img check -r all')"
            )
        if self._can_write():
            self._prepare_for_writes()  # as QEMU at a read-write open

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
            from arctern_block_qcow2.snapshots import read_snapshots  # few images have any

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
        self._compressed_tail = None

    def _cache_sizes(self) -> tuple[int, int]:
        """Tables the L2 and refcount caches hold, from QEMU's options and defaults.

        ``l2-cache-size`` and ``refcount-cache-size`` in bytes; or ``cache-size`` for
        both, the L2 cache taking what covers the disk and the refcount cache the rest.
        """
        cs = self.h.cluster_size
        needed = -(-(-(-self.h.size // cs) * 8) // cs) * cs  # L2 tables covering the disk
        sizes = {
            name: parse_size(name, self._options[name])
            for name in ("cache-size", "l2-cache-size", "refcount-cache-size")
            if name in self._options
        }
        min_refcount = DEFAULT_REFCOUNT_CACHE_CLUSTERS * cs
        if "cache-size" in sizes:
            total = sizes["cache-size"]
            if "l2-cache-size" in sizes and "refcount-cache-size" in sizes:
                raise UsageError(
                    "l2-cache-size, refcount-cache-size and cache-size may not be set together"
                )
            l2 = sizes.get("l2-cache-size")
            refcount = sizes.get("refcount-cache-size")
            if l2 is None and refcount is None:
                l2 = min(needed, max(0, total - min_refcount))
            l2 = total - refcount if l2 is None else l2
            refcount = total - l2 if refcount is None else refcount
        else:
            l2 = sizes.get("l2-cache-size", min(needed, DEFAULT_L2_CACHE_MAX))
            refcount = sizes.get("refcount-cache-size", min_refcount)
        if l2 < 0 or refcount < 0:
            raise UsageError("cache-size is smaller than l2-cache-size or refcount-cache-size")
        return max(2, l2 // cs), max(2, refcount // cs)

    @serialized
    def close(self) -> None:
        if self._can_write() and not self._broken:
            self.flush()
        self.map.cache.clear()
        self.refcounts.cache.clear()

    @serialized
    def invalidate_cache(self) -> None:
        """Drop all cached metadata and read it again; on failure keep the previous state.

        (The activation then fails and the node stays inactive, readable as before.)
        """
        previous = dict(self.__dict__)
        self.map.cache.clear()
        self.refcounts.cache.clear()
        try:
            self._load()
            if not self.node.read_only and self.h.corrupt:
                raise ImageFormatError(f"qcow2 image '{self._name}' is corrupt; cannot activate it")
        except BaseException:
            self.__dict__.update(previous)
            raise

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
        self._compressed_tail = None
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
        """Before writing: repair a dirty image, clear the autoclear bits we do not know.

        Done at a read-write open, or at the first write after an activation
        (``invalidate_cache`` itself writes nothing).
        """
        self._write_ready = True
        if self.h.dirty and not self.node.for_repair:  # the repair will report it instead
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

    # --- flush --------------------------------------------------------------------

    @serialized
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

    @serialized
    def info(self) -> ImageInfo:
        h = self.h
        data: dict[str, Any] = {
            "compat": "1.1" if h.version >= 3 else "0.10",
            "compression-type": L.COMPRESSION_NAMES[h.compression_type],
        }
        if h.version >= 3:
            data["lazy-refcounts"] = h.lazy_refcounts
        from arctern_block_qcow2.bitmaps import read_bitmaps

        bitmaps, _ = read_bitmaps(self.node.file, h, self._name)
        if bitmaps:
            data["bitmaps"] = [bitmap.as_info() for bitmap in bitmaps]
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

    @serialized
    def change_backing_file(self, backing_file: str | None, backing_format: str | None) -> None:
        """Rewrite the header cluster naming the new backing file and its format."""
        self._begin_write()
        self._writeback_tables()  # the header must not name a chain the data does not match
        h = self.h
        old = (h.backing_file, h.backing_format)
        h.backing_file, h.backing_format = backing_file, backing_format if backing_file else None
        try:
            header = h.pack()
        except ImageFormatError:
            h.backing_file, h.backing_format = old
            raise
        self.node.file.pwrite(0, header.ljust(h.cluster_size, b"\0"))
        self.node.file.flush()
        self.backing_filename, self.backing_format = h.backing_file, h.backing_format

    @serialized
    def amend(self, options: dict[str, Any]) -> None:
        from arctern_block_qcow2.amend import amend_image

        amend_image(self, options)

    @serialized
    def check(self, fix: str = "") -> CheckResult:
        from arctern_block_qcow2.check import check_image

        if fix and not self._can_write():
            raise BlockError(f"'{self._name}': repairing needs an active, writable image")
        if self._can_write():
            self._writeback_tables()
        result = check_image(self, fix)
        if fix and not (result.corruptions or result.check_errors):
            # Consistent now: clean, and no longer corrupt (as qemu-img check -r).
            clean = self.h.incompatible_features & ~(L.INCOMPAT_DIRTY | L.INCOMPAT_CORRUPT)
            if clean != self.h.incompatible_features:
                self._set_incompatible(clean)
        return result

    def _writeback_tables(self) -> None:
        self.map.cache.flush()
        self._apply_frees()
        self.refcounts.flush()
