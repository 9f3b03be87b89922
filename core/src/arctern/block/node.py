"""BlockNode: one driver instance in the graph of an open image.

A format node (raw, qcow2) has a protocol child ``file`` and possibly a
``backing`` node; a protocol node (file) has neither. The node is where the
layer enforces what no driver may get wrong: read-only and inactive nodes
refuse writes, unaligned requests are aligned for drivers that need it, and
activation runs children first, then ``invalidate_cache``, then the locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from arctern.block import permissions
from arctern.block.alignment import Aligner
from arctern.block.driver import BlockDriver, BlockStatus
from arctern.block.options import CACHE_MODES, CacheMode
from arctern.errors import ArcternError, BlockError, InactiveError, ReadOnlyError, UsageError

if TYPE_CHECKING:
    from arctern.plugins import Registry

log = logging.getLogger(__name__)

PREALLOCATION_MODES = ("off", "metadata", "falloc", "full")


def as_byte_view(buf: Any) -> memoryview:
    """A flat memoryview of unsigned bytes over any buffer-protocol object."""
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class BlockNode:
    """One node of an image graph: a driver instance and its children.

    Nodes are built by :func:`arctern.block.open_image`; drivers reach their
    children through ``self.node.file`` and ``self.node.backing``.
    """

    def __init__(
        self,
        driver_class: type[BlockDriver],
        filename: str,
        *,
        read_only: bool,
        active: bool,
        cache: CacheMode = CACHE_MODES["writeback"],
        discard: str = "ignore",
        options: dict[str, Any] | None = None,
        file: BlockNode | None = None,
        perm: int = permissions.NONE,
        shared: int = permissions.ALL,
        registry: Registry | None = None,
    ) -> None:
        self.filename = filename
        self.format_name = driver_class.name
        self.read_only = read_only
        self.active = active
        self.cache = cache
        self.discard = discard
        self.options: dict[str, Any] = dict(options or {})
        self.file = file
        self.backing: BlockNode | None = None
        self.perm = perm
        self.shared = shared
        self.registry = registry
        #: True when the format was guessed by probing (raw then guards block 0).
        self.probed = False
        #: Opened by a repairing check: a format may open a damaged image read-write.
        self.for_repair = False
        self.closed = False
        self._aligner = Aligner()
        self.driver = driver_class(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        mode = "ro" if self.read_only else "rw"
        return f"<BlockNode {self.format_name} {self.filename!r} {mode} {state}>"

    # --- graph -------------------------------------------------------------

    def children(self) -> list[BlockNode]:
        return [child for child in (self.file, self.backing) if child is not None]

    def iter_chain(self) -> Iterator[BlockNode]:
        """This node, then its backing node, then that one's backing, and so on."""
        node: BlockNode | None = self
        while node is not None:
            yield node
            node = node.backing

    # --- I/O ---------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise unless this node may be written now (open, read-write and active)."""
        if self.closed:
            raise BlockError(f"'{self.filename}' is closed")
        if self.read_only:
            raise ReadOnlyError(f"'{self.filename}' is opened read-only")
        if not self.active:
            raise InactiveError(
                f"'{self.filename}' is inactive (another process owns the image): "
                "no writes until it is activated"
            )

    def pread(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` from ``offset``. A protocol node reads zeroes past its end."""
        buf = as_byte_view(buf)
        align = self.driver.request_alignment
        if align > 1:
            self._aligner.pread(self.driver, offset, buf, align)
        else:
            self.driver.pread(offset, buf)

    def pwrite(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset``; refused on a read-only or inactive node."""
        self.check_writable()
        data = as_byte_view(data)
        align = self.driver.request_alignment
        if align > 1:
            self._aligner.pwrite(self.driver, offset, data, align)
        else:
            self.driver.pwrite(offset, data)

    def copy_range_from(self, offset: int, length: int, dst: BlockNode, dst_offset: int) -> None:
        """Copy ``length`` bytes at ``offset`` to ``dst`` at ``dst_offset``, offloaded where
        the drivers of both sides can (see :mod:`arctern.block.copy`)."""
        dst.check_writable()
        if length > 0:
            self.driver.copy_range_from(offset, length, dst, dst_offset)

    def copy_range_to(self, src: BlockNode, src_offset: int, offset: int, length: int) -> None:
        """Write at ``offset`` the ``length`` bytes at ``src_offset`` of protocol node ``src``."""
        self.check_writable()
        if length > 0:
            self.driver.copy_range_to(src, src_offset, offset, length)

    def flush(self) -> None:
        """Write back what the driver caches and make it stable (no-op with cache=unsafe)."""
        if self.closed or self.read_only or not self.active:
            return  # nothing of ours can be pending
        if self.driver.protocol and self.cache.no_flush:
            return
        self.driver.flush()

    def getlength(self) -> int:
        return self.driver.getlength()

    def truncate(self, size: int, preallocation: str = "off") -> None:
        self.check_writable()
        if preallocation not in PREALLOCATION_MODES:
            raise UsageError(
                f"Invalid preallocation mode '{preallocation}' "
                f"(allowed: {', '.join(PREALLOCATION_MODES)})"
            )
        if size < 0:
            raise UsageError(f"Invalid size {size} for '{self.filename}'")
        self.driver.truncate(size, preallocation=preallocation)

    def pdiscard(self, offset: int, length: int) -> None:
        """Discard the range, or do nothing when the node was opened with discard=ignore."""
        self.check_writable()
        if self.discard == "unmap" and length > 0:
            self.driver.pdiscard(offset, length)

    def pwrite_zeroes(self, offset: int, length: int, may_unmap: bool = False) -> None:
        """Make the range read as zeroes; unmapping is allowed only with discard=unmap."""
        self.check_writable()
        if length > 0:
            may_unmap = may_unmap and self.discard == "unmap"
            self.driver.pwrite_zeroes(offset, length, may_unmap=may_unmap)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """The driver's status of the range from ``offset``, checked to make progress.

        Callers walk an image by status; a driver answering with an empty or
        overlong run would make them loop forever or skip data.
        """
        status = self.driver.block_status(offset, length)
        if length > 0 and not 0 < status.length <= length:
            raise BlockError(
                f"block driver '{self.format_name}' reported a status run of "
                f"{status.length} bytes for {length} bytes at offset {offset} of "
                f"'{self.filename}'"
            )
        return status

    def actual_size(self) -> int | None:
        """Host bytes used by this node's storage (asks the file child if the driver can't say)."""
        size = self.driver.actual_size()
        if size is None and self.file is not None:
            return self.file.actual_size()
        return size

    # --- activation --------------------------------------------------------

    def activate(self) -> None:
        """Children first, then ``invalidate_cache``, then the locks; then the node may write.

        If any step fails the node stays inactive (children activated by this
        call are inactivated again) and the call can be retried.
        """
        if self.closed:
            raise BlockError(f"'{self.filename}' is closed")
        if self.active:
            return
        activated: list[BlockNode] = []
        try:
            for child in self.children():
                if not child.active:
                    child.activate()
                    activated.append(child)
            self.driver.invalidate_cache()
            self.driver.set_permissions(self.perm, self.shared)
        except BaseException:
            for child in reversed(activated):
                try:
                    child.inactivate()
                except ArcternError as exc:
                    log.warning("could not inactivate '%s' again: %s", child.filename, exc)
            raise
        self.active = True
        log.debug("activated %r", self)
        self._notify("arctern_image_activated")

    def inactivate(self) -> None:
        """Write back and mark clean, release the locks, then the children. Idempotent."""
        if not self.active or self.closed:
            return
        if not self.read_only:
            self.driver.inactivate()
        self.active = False
        self.driver.set_permissions(permissions.NONE, permissions.ALL)
        log.debug("inactivated %r", self)
        self._notify("arctern_image_inactivated")
        for child in self.children():
            child.inactivate()

    def _notify(self, event: str) -> None:
        if self.registry is not None:
            self.registry.notify(event, node=self)

    # --- life cycle --------------------------------------------------------

    def close(self) -> None:
        """Close the driver (it writes back only when active and writable), then the children."""
        if self.closed:
            return
        self.closed = True
        try:
            self.driver.close()
        finally:
            self._aligner.close()
            self.close_children()

    def close_children(self) -> None:
        """Close the children only (the layer's clean-up after a failed driver open)."""
        self.closed = True
        for child in self.children():
            child.close()
