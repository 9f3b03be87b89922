"""The BlockDriver contract: QEMU's ``BlockDriver`` table in Python form.

A block driver class serves one kind of node:

* a *protocol* driver (``protocol = True``; e.g. "file") reaches the storage
  named by a filename;
* a *format* driver (e.g. "raw", "qcow2") interprets the bytes of its child
  node ``self.node.file`` and may have a backing node ``self.node.backing``.

The block layer (:mod:`arctern.block`) builds a graph of nodes, creates one
driver instance per node, and calls the callbacks below. Drivers never open
files or other nodes themselves: they ask the layer through their node.

Callbacks marked *required* must be defined by every driver class; the
registry refuses a class that lacks one. ``invalidate_cache`` is required with
no default on purpose: live migration with shared storage depends on it. A
driver that caches nothing implements it as an honest no-op.

Activation. A node is opened ACTIVE or INACTIVE (``self.node.active``). While
inactive the driver may read but must write nothing to its child: no data, no
header update, no dirty bit, not even on close. The layer refuses guest writes
to an inactive node before they reach the driver; the driver is responsible
for its own metadata writes (e.g. qcow2 must not set the dirty bit in
``open`` when the node is inactive). On activation the layer activates the
children first, then calls ``invalidate_cache``: drop every cached piece of
metadata and re-read it from the child. On inactivation it calls
``inactivate``: write back everything cached, mark the image clean, flush.

I/O. Offsets and lengths are bytes. ``pread``/``pwrite`` receive memoryviews
of any alignment and length; the layer has already checked the range against
``getlength()`` for guest I/O (format drivers still check their own metadata).
A driver that needs aligned requests declares ``request_alignment`` and the
layer does read-modify-write around it.

Errors. Raise :class:`arctern.errors.ImageFormatError` for a corrupt or
unsupported image, :class:`arctern.errors.BlockError` for anything else, with
a one-line message naming the file. Never let an OSError escape unexplained.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from arctern.contract import required
from arctern.errors import BlockError

if TYPE_CHECKING:
    from arctern.block.node import BlockNode


# block_status flags, as QEMU's BDRV_BLOCK_*.
STATUS_DATA = 0x01  # the range reads as data stored at this layer (or below)
STATUS_ZERO = 0x02  # the range reads as zeroes
STATUS_OFFSET_VALID = 0x04  # ``offset`` gives where the data is in the child ``file``
STATUS_ALLOCATED = 0x10  # the content comes from this layer, not from the backing node
STATUS_RECURSE = 0x40  # ask the ``file`` child for finer status at ``offset``
STATUS_COMPRESSED = 0x80  # compressed data (not mappable)


@dataclass
class BlockStatus:
    """What ``block_status`` reports for the first ``length`` bytes of a range."""

    flags: int
    length: int
    offset: int | None = None  # host offset in the file child, with STATUS_OFFSET_VALID


@dataclass
class CheckResult:
    """What ``check`` finds; mirrors qemu-img check's report."""

    corruptions: int = 0
    leaks: int = 0
    check_errors: int = 0
    corruptions_fixed: int = 0
    leaks_fixed: int = 0
    image_end_offset: int | None = None
    total_clusters: int | None = None
    allocated_clusters: int | None = None
    fragmented_clusters: int | None = None
    compressed_clusters: int | None = None
    messages: list[str] = field(default_factory=list)  # "ERROR ..." / "Leaked cluster ..."


@dataclass
class ImageInfo:
    """Format-specific facts for ``arctern-img info`` (qemu-img's field names)."""

    cluster_size: int | None = None
    dirty: bool = False
    format_specific: dict[str, Any] | None = None  # {"type": "qcow2", "data": {...}}
    backing_filename: str | None = None
    backing_format: str | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)


class SnapshotError(BlockError):
    """An internal snapshot operation failed; ``errno`` says why, as QEMU's drivers return it.

    (qemu-img reports some of these failures by errno alone, e.g. ``-95 (Operation
    not supported)``; the message is for everyone else.)
    """

    def __init__(self, errno: int, message: str | None = None) -> None:
        super().__init__(message or os.strerror(errno))
        self.errno = errno


class BlockDriver:
    """Base class of every block driver. Subclass it and set ``name``."""

    #: The format or protocol name users pass with ``-f``/``format=`` ("qcow2").
    name: ClassVar[str] = ""
    #: True for protocol drivers (they open a filename), False for formats.
    protocol: ClassVar[bool] = False
    #: Smallest I/O unit the driver accepts; the layer aligns requests for it.
    request_alignment: ClassVar[int] = 1
    #: Create options the driver accepts (name -> one-line help), for ``-o help``.
    create_options: ClassVar[dict[str, str]] = {}

    def __init__(self, node: BlockNode) -> None:
        self.node = node

    # --- class-level callbacks -------------------------------------------

    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        """Score 0..100: how sure the driver is that ``header`` (first 2 KiB) is its format."""
        return 0

    @classmethod
    def create(cls, file: BlockNode, size: int, options: dict[str, Any]) -> None:
        """Write a new, empty image of ``size`` bytes into the (empty) protocol node ``file``.

        ``options`` are parsed create options (``-o``), e.g. cluster_size,
        backing_file, backing_fmt. Formats that cannot be created do not
        override this.
        """
        from arctern.errors import BlockError

        raise BlockError(f"format '{cls.name}' does not support image creation")

    @classmethod
    def measure(
        cls,
        size: int,
        options: dict[str, Any],
        data: Iterable[tuple[int, int]] | None,
        bitmaps: list[tuple[str, int]] | None,
    ) -> dict[str, int]:
        """What a new image of ``size`` bytes made with create ``options`` needs.

        ``qemu-img measure``: ``{"required": .., "fully-allocated": ..}`` (and
        ``"bitmaps"`` if the format can hold the source's persistent ``bitmaps``,
        (name, granularity) pairs; None: the source has no such thing). ``data``
        are the (offset, length) runs of data the source holds, in order (None:
        measure an empty image of ``size``).
        """
        from arctern.errors import BlockError

        raise BlockError(f"Format driver '{cls.name}' does not support size measurement")

    # --- required callbacks ------------------------------------------------

    @required
    def open(self, options: dict[str, Any]) -> None:
        """Open the node: read headers and metadata from ``self.node.file``.

        Honour ``self.node.read_only`` and ``self.node.active`` (write nothing
        at all when inactive). A format with a backing file sets
        ``self.backing_filename`` (as stored in the image) and
        ``self.backing_format`` here; the layer then opens the backing chain.
        If ``open`` raises, ``close`` is not called: release what was acquired.

        A protocol driver gets ``create=True`` in ``options`` from
        :func:`arctern.block.create_image`: create the storage if it does not
        exist (the layer empties it once the locks are taken).
        """

    @required
    def close(self) -> None:
        """Write back caches (only if active and writable) and release resources."""

    @required
    def getlength(self) -> int:
        """Virtual size of the node in bytes."""

    @required
    def pread(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` with the bytes at ``offset``; unallocated ranges read from the backing."""

    @required
    def pwrite(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset``; allocate as needed, keeping metadata consistent."""

    @required
    def flush(self) -> None:
        """Write back cached metadata in a consistent order, then flush the child."""

    @required
    def invalidate_cache(self) -> None:
        """Drop every cached piece of metadata and re-read it from the child.

        Called on activation (after an incoming migration, or when the source
        takes its images back after a failed one). Must write nothing.
        """

    # --- optional callbacks (sensible defaults) ------------------------------

    backing_filename: str | None = None
    backing_format: str | None = None

    def inactivate(self) -> None:
        """Prepare for another process to take over the image: write back, mark clean, flush."""
        self.flush()

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        """Make ``length`` bytes at ``offset`` read as zeroes (default: write zero buffers)."""
        chunk = 1 << 20
        zeros = bytes(min(chunk, length))
        mv = memoryview(zeros)
        while length > 0:
            n = min(chunk, length)
            self.pwrite(offset, mv[:n])
            offset += n
            length -= n

    def pdiscard(self, offset: int, length: int) -> None:
        """Hint that the range is no longer used; contents become unspecified. Default: ignore."""

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """Status of the range starting at ``offset`` (default: all data, allocated here)."""
        return BlockStatus(STATUS_DATA | STATUS_ALLOCATED, length)

    def truncate(self, size: int, *, preallocation: str = "off") -> None:
        """Change the virtual size (grow; shrinking may be refused)."""
        from arctern.errors import BlockError

        raise BlockError(f"format '{self.name}' does not support resizing")

    def copy_range_from(self, offset: int, length: int, dst: BlockNode, dst_offset: int) -> None:
        """Copy ``length`` bytes at ``offset`` of this node to ``dst`` at ``dst_offset``.

        QEMU's ``bdrv_co_copy_range_from``. A format driver that knows where the
        bytes lie in its file child passes the copy down to that child
        (``self.node.file.copy_range_from(...)``); a protocol driver, holding
        them, asks ``dst`` to take them: ``dst.copy_range_to(self.node, ...)``.
        Default: read and write through a buffer.
        """
        from arctern.block.copy import bounce_copy

        bounce_copy(self.node, offset, dst, dst_offset, length)

    def copy_range_to(self, src: BlockNode, src_offset: int, offset: int, length: int) -> None:
        """Write at ``offset`` of this node ``length`` bytes of the protocol node ``src``.

        QEMU's ``bdrv_co_copy_range_to``. A format driver maps the range to its
        file child (allocating as a write would); a protocol driver copies file
        to file if it can (file: copy_file_range). Default: through a buffer.
        """
        from arctern.block.copy import bounce_copy

        bounce_copy(src, src_offset, self.node, offset, length)

    def change_backing_file(self, backing_file: str | None, backing_format: str | None) -> None:
        """Name another backing file (None: none) in the image, data untouched.

        QEMU's ``bdrv_change_backing_file`` (``qemu-img rebase``). Formats without
        backing files do not override this.
        """
        from arctern.errors import BlockError

        raise BlockError(f"format '{self.name}' does not support backing files")

    def make_empty(self) -> None:
        """Drop every cluster the image holds itself: it then reads as its backing file.

        QEMU's ``bdrv_make_empty`` (``qemu-img commit`` empties the committed image).
        """
        from arctern.errors import BlockError

        raise BlockError(f"format '{self.name}' cannot empty an image")

    def amend(self, options: dict[str, Any]) -> None:
        """Change creation options of the open image in place (``qemu-img amend -o``)."""
        from arctern.errors import BlockError

        raise BlockError(f"Format driver '{self.name}' does not support option amendment")

    # Internal snapshots (``qemu-img snapshot``). They are listed by ``info().snapshots``.
    # A format that holds them overrides all three; each requires an active, writable node.

    def snapshot_create(
        self,
        name: str,
        *,
        date_sec: int,
        date_nsec: int,
        vm_clock_nsec: int = 0,
        icount: int | None = None,
    ) -> dict[str, Any]:
        """Take a disk-only snapshot named ``name`` (names need not be unique); return its
        ``info().snapshots`` entry, with the ID the format chose (QEMU: the next number)."""
        raise self._no_snapshots()

    def snapshot_goto(self, id_or_name: str) -> None:
        """Make the snapshot whose ID, else whose name, is ``id_or_name`` the active image
        (its data and its virtual size). Not found: :class:`SnapshotError` with ENOENT."""
        raise self._no_snapshots()

    def snapshot_delete(self, snapshot_id: str | None, name: str | None) -> None:
        """Delete the first snapshot with this ID and this name (None: any). Not found:
        :class:`SnapshotError` with ENOENT."""
        raise self._no_snapshots()

    def _no_snapshots(self) -> SnapshotError:
        import errno

        return SnapshotError(
            errno.ENOTSUP, f"format '{self.name}' does not support internal snapshots"
        )

    def check(self, fix: str = "") -> CheckResult | None:
        """Check metadata consistency (qemu-img check); None if the format has no check."""
        return None

    def info(self) -> ImageInfo:
        """Format-specific facts for ``arctern-img info``."""
        return ImageInfo()

    def set_permissions(self, perm: int, shared: int) -> None:
        """Use ``perm`` and share ``shared`` (bits of :mod:`arctern.block.permissions`).

        Protocol drivers turn this into image locks that other processes see
        (the file driver takes QEMU's OFD lock bytes); ``(0, ALL)`` releases
        them. On a conflict raise :class:`arctern.errors.ImageLockError` and
        keep the previous state. The layer calls it when a node is opened
        active, activated (after ``invalidate_cache``) and inactivated.
        Default: nothing to lock.
        """

    def actual_size(self) -> int | None:
        """Bytes the node occupies on the host (protocol drivers), or None to ask the child."""
        return None
