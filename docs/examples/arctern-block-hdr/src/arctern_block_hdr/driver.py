"""The "hdr" format: a 512-byte header, then the guest's bytes, as they are.

Header (big-endian): magic ``ARCTHDR1`` (8 bytes), virtual size (8 bytes),
zero padding up to 512 bytes. The data of guest offset N lives at file
offset 512 + N.

The header is the driver's cached metadata: the virtual size is read once at
open and kept. When another process resizes the image (say, the source of a
live migration), the cached size is stale; ``invalidate_cache`` re-reads it.
That is exactly the duty Arctern's migration hand-over relies on.
"""

from __future__ import annotations

import struct
from typing import Any

from arctern.block.driver import BlockDriver
from arctern.errors import ImageFormatError

MAGIC = b"ARCTHDR1"
HEADER = struct.Struct(">8sQ")
DATA_OFFSET = 512


class HdrDriver(BlockDriver):
    name = "hdr"
    create_options = {"size": "Virtual disk size"}

    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        return 100 if header.startswith(MAGIC) else 0

    @classmethod
    def create(cls, file, size: int, options: dict[str, Any]) -> None:
        header = bytearray(DATA_OFFSET)
        HEADER.pack_into(header, 0, MAGIC, size)
        file.pwrite(0, memoryview(header))
        file.flush()

    def open(self, options: dict[str, Any]) -> None:
        self.size = self._read_size()

    def _read_size(self) -> int:
        raw = bytearray(HEADER.size)
        self.node.file.pread(0, memoryview(raw))
        magic, size = HEADER.unpack(raw)
        if magic != MAGIC:
            raise ImageFormatError(f"'{self.node.filename}' is not an hdr image (bad magic)")
        return size

    def close(self) -> None:
        """Nothing is cached that the file does not already hold."""

    def getlength(self) -> int:
        return self.size

    def pread(self, offset: int, buf: memoryview) -> None:
        self.node.file.pread(DATA_OFFSET + offset, buf)

    def pwrite(self, offset: int, data: memoryview) -> None:
        self.node.file.pwrite(DATA_OFFSET + offset, data)

    def flush(self) -> None:
        self.node.file.flush()

    def invalidate_cache(self) -> None:
        self.size = self._read_size()

    def truncate(self, size: int, *, preallocation: str = "off") -> None:
        header = bytearray(HEADER.size)
        HEADER.pack_into(header, 0, MAGIC, size)
        self.node.file.pwrite(0, memoryview(header))
        self.size = size
