"""Copy offload: moving bytes between two images without passing them through Python.

QEMU's ``bdrv_co_copy_range`` in Python form. The source side hands the copy
down its graph (a format driver maps the range to where the bytes lie in its
file child) until a protocol node holds them; the destination side then maps
its range the same way (qcow2 allocates clusters as for a write) down to its
protocol node, which copies file to file (the file driver: copy_file_range(2),
in the kernel, or a reflink on file systems that share blocks). Whatever a
driver cannot map (zeroes, compressed clusters, a backing file, unaligned
ends) is copied through a buffer instead: the result is the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arctern.block.node import BlockNode

#: Bytes moved per step when a copy goes through a buffer.
BOUNCE_CHUNK = 4 << 20


@dataclass(frozen=True)
class CopySource:
    """``length`` bytes at ``offset`` of the protocol node ``node``, still to be copied.

    A format driver's write path can carry it where it carries a memoryview:
    it has a length and slices, and its bytes reach a file with
    :meth:`write_to` instead of ``pwrite``.
    """

    node: BlockNode
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: slice) -> CopySource:
        start, stop, step = item.indices(self.length)
        if step != 1:
            raise ValueError("a copy source slices with step 1 only")
        return CopySource(self.node, self.offset + start, max(0, stop - start))

    def write_to(self, dst: BlockNode, dst_offset: int) -> None:
        """Copy these bytes into ``dst`` at ``dst_offset`` (offloaded where ``dst`` can)."""
        dst.copy_range_to(self.node, self.offset, dst_offset, self.length)


def bounce_copy(src: BlockNode, src_offset: int, dst: BlockNode, dst_offset: int, length: int):
    """Copy through a buffer: read from ``src``, write to ``dst`` (the fallback)."""
    buf = memoryview(bytearray(min(length, BOUNCE_CHUNK)))
    done = 0
    while done < length:
        n = min(len(buf), length - done)
        src.pread(src_offset + done, buf[:n])
        dst.pwrite(dst_offset + done, buf[:n])
        done += n
