"""Copy offload for qcow2 (``arctern-img convert -C``), as QEMU's qcow2 copy_range callbacks.

As a source, runs of data clusters are handed down to the file child with their
host offsets; as a destination, whole clusters are allocated and mapped exactly
as a write would (the bytes reach the file before the L2 entries that point to
them), with a :class:`~arctern.block.copy.CopySource` travelling the write path
instead of a buffer. Anything else goes through a buffer. A mixin of
:class:`arctern_block_qcow2.driver.Qcow2Driver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arctern.block.copy import CopySource, bounce_copy
from arctern.block.driver import (
    STATUS_COMPRESSED,
    STATUS_DATA,
    STATUS_OFFSET_VALID,
    STATUS_ZERO,
)
from arctern_block_qcow2.serial import serialized

if TYPE_CHECKING:
    from arctern.block.node import BlockNode

_PLAIN_DATA = STATUS_DATA | STATUS_OFFSET_VALID
_NOT_PLAIN = STATUS_ZERO | STATUS_COMPRESSED


class CopyRange:
    """copy_range_from() and copy_range_to() of the BlockDriver contract."""

    @serialized
    def copy_range_from(self, offset: int, length: int, dst: BlockNode, dst_offset: int) -> None:
        end = offset + length
        cs, file = self.h.cluster_size, self.node.file
        while offset < end:
            status = self.block_status(offset, end - offset)
            n = min(status.length, end - offset)
            host = status.offset
            if (
                status.flags & (_PLAIN_DATA | _NOT_PLAIN) == _PLAIN_DATA
                and host is not None
                and host % cs == offset % cs
                and host + n <= file.getlength()
            ):
                file.copy_range_from(host, n, dst, dst_offset)
            else:  # zeroes, compressed, backing or damaged: the read path sorts it out
                bounce_copy(self.node, offset, dst, dst_offset, n)
            offset += n
            dst_offset += n

    def copy_range_to(self, src: BlockNode, src_offset: int, offset: int, length: int) -> None:
        cs = self.h.cluster_size
        end = offset + length
        first = min(end, -(-offset // cs) * cs)
        last = max(first, end // cs * cs)
        if offset < first:  # a partial first cluster needs copy on write: through a buffer
            bounce_copy(src, src_offset, self.node, offset, first - offset)
        if first < last:
            self.pwrite(first, CopySource(src, src_offset + first - offset, last - first))
        if last < end:
            bounce_copy(src, src_offset + last - offset, self.node, last, end - last)
