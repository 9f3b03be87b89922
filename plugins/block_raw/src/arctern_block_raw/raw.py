"""The "raw" format: the guest's bytes are the file's bytes."""

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

    def open(self, options: dict[str, Any]) -> None:
        if options:
            raise UsageError(f"Invalid parameter '{sorted(options)[0]}' for format 'raw'")

    def close(self) -> None:
        """Nothing of its own to write back: every byte went straight to the file."""

    def invalidate_cache(self) -> None:
        """Raw caches no metadata: an honest no-op.

        What can be stale is the host page cache of the file; the file node
        below drops it in its own invalidate_cache, which activation runs
        before this one (children first), exactly as QEMU's file-posix does.
        """

    def getlength(self) -> int:
        return self.node.file.getlength()

    def pread(self, offset: int, buf: memoryview) -> None:
        self.node.file.pread(offset, buf)

    def pwrite(self, offset: int, data: memoryview) -> None:
        if self.node.probed and offset < PROBE_SIZE:
            self._refuse_format_change(offset, data)
        self.node.file.pwrite(offset, data)

    def _refuse_format_change(self, offset: int, data: memoryview) -> None:
        """A probed raw image must not be turned into something that probes as another format.

        Otherwise a guest could write a qcow2 header into its disk and make
        the next open (probing again) read any host file it names as backing.
        """
        header = bytearray(min(PROBE_SIZE, max(self.getlength(), offset + len(data))))
        self.node.file.pread(0, memoryview(header))
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
        self.node.file.truncate(size, preallocation)

    def pdiscard(self, offset: int, length: int) -> None:
        self.node.file.pdiscard(offset, length)

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        self.node.file.pwrite_zeroes(offset, length, may_unmap)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        status = self.node.file.block_status(offset, length)
        return replace(status, flags=status.flags | STATUS_ALLOCATED)
