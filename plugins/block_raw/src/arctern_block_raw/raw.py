"""The "raw" format: the guest's bytes are the file's bytes.

Open options (as QEMU's raw driver): ``offset`` where the guest's bytes start
in the file, ``size`` how many there are (a fixed-size window: a multiple of
512, not resizable). Both default to the whole file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from arctern.block.driver import STATUS_ALLOCATED, BlockDriver, BlockStatus
from arctern.block.image import PROBE_SIZE, probe_format
from arctern.block.node import BlockNode
from arctern.errors import BlockError, UsageError


class RawDriver(BlockDriver):
    name = "raw"
    create_options = {"preallocation": "Preallocation mode (allowed values: off, falloc, full)"}

    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        """Anything is a raw image: the lowest score, chosen only when no format claims it."""
        return 1

    @classmethod
    def create(cls, file: BlockNode, size: int, options: dict[str, Any]) -> None:
        file.truncate(size, options.get("preallocation", "off"))

    @classmethod
    def measure(cls, size, options, data, bitmaps) -> dict[str, int]:
        """Every byte of the virtual disk is in the file (as QEMU's raw_measure says)."""
        return {"required": size, "fully-allocated": size}

    offset = 0
    size: int | None = None  # None: up to the end of the file

    def open(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - {"offset", "size"})
        if unknown:
            raise UsageError(f"Invalid parameter '{unknown[0]}' for format 'raw'")
        self.offset = _non_negative(options, "offset", 0)
        self.size = _non_negative(options, "size", None)
        if self.size is not None and self.size % 512:
            raise UsageError("Specified size is not multiple of 512")
        file_size = self.node.file.getlength()
        if self.offset > file_size:
            raise UsageError(
                f"Offset ({self.offset}) cannot be greater than size of the containing "
                f"file ({file_size})"
            )
        if self.size is not None and self.offset + self.size > file_size:
            raise UsageError(
                f"The sum of offset ({self.offset}) and size ({self.size}) has to be "
                f"smaller or equal to the actual size of the containing file ({file_size})"
            )

    def close(self) -> None:
        """Nothing of its own to write back: every byte went straight to the file."""

    def invalidate_cache(self) -> None:
        """Raw caches no metadata: an honest no-op.

        What can be stale is the host page cache of the file; the file node
        below drops it in its own invalidate_cache, which activation runs
        before this one (children first), exactly as QEMU's file-posix does.
        """

    def getlength(self) -> int:
        if self.size is not None:
            return self.size
        return max(0, self.node.file.getlength() - self.offset)

    def pread(self, offset: int, buf: memoryview) -> None:
        self.node.file.pread(self.offset + offset, buf)

    def pwrite(self, offset: int, data: memoryview) -> None:
        if self.node.probed and offset < PROBE_SIZE:
            self._refuse_format_change(offset, data)
        self.node.file.pwrite(self.offset + offset, data)

    def _refuse_format_change(self, offset: int, data: memoryview) -> None:
        """A probed raw image must not be turned into something that probes as another format.

        Otherwise a guest could write a qcow2 header into its disk and make
        the next open (probing again) read any host file it names as backing.
        """
        header = bytearray(min(PROBE_SIZE, max(self.getlength(), offset + len(data))))
        self.pread(0, memoryview(header))
        header[offset : offset + len(data)] = data[: len(header) - offset]
        if self.node.registry is None:
            return
        guessed = probe_format(bytes(header), self.node.filename, self.node.registry)
        if guessed is not type(self):
            raise BlockError(
                f"Refusing to write block 0 of '{self.node.filename}': its format was probed "
                f"as raw and the data would make it probe as '{guessed.name}'; "
                "specify the format explicitly"
            )

    def flush(self) -> None:
        self.node.file.flush()

    def truncate(self, size: int, *, preallocation: str = "off") -> None:
        if self.size is not None:
            raise BlockError(f"Cannot resize fixed-size raw disks ('{self.node.filename}')")
        self.node.file.truncate(self.offset + size, preallocation)

    def copy_range_from(self, offset: int, length: int, dst: BlockNode, dst_offset: int) -> None:
        self.node.file.copy_range_from(self.offset + offset, length, dst, dst_offset)

    def copy_range_to(self, src: BlockNode, src_offset: int, offset: int, length: int) -> None:
        if self.node.probed and offset < PROBE_SIZE:  # pwrite guards block 0: go through it
            super().copy_range_to(src, src_offset, offset, length)
            return
        self.node.file.copy_range_to(src, src_offset, self.offset + offset, length)

    def pdiscard(self, offset: int, length: int) -> None:
        self.node.file.pdiscard(self.offset + offset, length)

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        self.node.file.pwrite_zeroes(self.offset + offset, length, may_unmap)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        status = self.node.file.block_status(self.offset + offset, length)
        return replace(status, flags=status.flags | STATUS_ALLOCATED)


def _non_negative(options: dict[str, Any], key: str, default: int | None) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"Parameter '{key}' expects a non-negative number") from None
    if number < 0:
        raise UsageError(f"Parameter '{key}' expects a non-negative number")
    return number
