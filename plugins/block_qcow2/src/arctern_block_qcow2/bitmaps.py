"""The clusters persistent dirty bitmaps hold, so that check counts them as QEMU does.

The driver does not use bitmaps (it clears their autoclear bit on its first
write, which tells QEMU they are stale), but while that bit is set their
directory, bitmap tables and data clusters are references like any other:
without them ``check -r leaks`` would free clusters QEMU still uses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L

_EXTENSION = struct.Struct(">IIQQ")
_ENTRY = struct.Struct(">QIIBBHI")
#: QEMU's limits on the number of bitmaps and the directory size.
MAX_BITMAPS = 65535
MAX_DIRECTORY_BYTES = 64 << 20
TABLE_OFFSET_MASK = 0x00FFFFFFFFFFFE00


@dataclass
class Bitmap:
    name: str
    flags: int
    granularity_bits: int
    table_offset: int
    table_size: int

    def as_info(self) -> dict:
        """The entry ``qemu-img info --output=json`` lists under format-specific "bitmaps"."""
        flags = [name for bit, name in ((0, "in-use"), (1, "auto")) if self.flags >> bit & 1]
        return {"flags": flags, "name": self.name, "granularity": 1 << self.granularity_bits}


def read_bitmaps(file, h, filename: str) -> tuple[list[Bitmap], tuple[int, int] | None]:
    """The valid bitmaps (none unless their autoclear bit is set) and the directory extent."""

    def bad(msg: str) -> ImageFormatError:
        return ImageFormatError(f"qcow2 image '{filename}': bitmaps: {msg}")

    data = next((d for m, d in h.unknown_extensions if m == L.EXT_BITMAPS), None)
    if data is None or not h.autoclear_features & L.AUTOCLEAR_BITMAPS:
        return [], None
    if len(data) < _EXTENSION.size:
        raise bad("extension too short")
    count, _, dir_size, dir_offset = _EXTENSION.unpack_from(data)
    length = file.getlength()
    if count > MAX_BITMAPS or dir_size > MAX_DIRECTORY_BYTES or dir_offset % h.cluster_size:
        raise bad("invalid bitmap directory")
    if dir_offset + dir_size > length:
        raise bad("bitmap directory lies past the end of the file")
    directory = bytearray(dir_size)
    file.pread(dir_offset, memoryview(directory))
    bitmaps, pos = [], 0
    for _ in range(count):
        if pos + _ENTRY.size > dir_size:
            raise bad("truncated bitmap directory")
        table_offset, table_size, flags, _, gran, name_size, extra = _ENTRY.unpack_from(
            directory, pos
        )
        name_at = pos + _ENTRY.size + extra
        name = bytes(directory[name_at : name_at + name_size]).decode(errors="replace")
        pos = name_at + name_size
        pos += -pos % 8
        if table_offset % h.cluster_size or table_offset + table_size * 8 > length:
            raise bad(f"invalid table of bitmap '{name}'")
        bitmaps.append(Bitmap(name, flags, gran, table_offset, table_size))
    return bitmaps, (dir_offset, dir_size)


def bitmap_references(file, h, filename: str) -> list[tuple[int, int]]:
    """(first cluster, count) of every cluster the valid bitmaps reference."""
    bitmaps, directory = read_bitmaps(file, h, filename)
    if directory is None:
        return []
    cs, cb = h.cluster_size, h.cluster_bits
    refs = [(directory[0] >> cb, -(-directory[1] // cs))]
    for bitmap in bitmaps:
        refs.append((bitmap.table_offset >> cb, -(-bitmap.table_size * 8 // cs)))
        table = bytearray(bitmap.table_size * 8)
        file.pread(bitmap.table_offset, memoryview(table))
        for (entry,) in struct.iter_unpack(">Q", table):
            if entry & TABLE_OFFSET_MASK:
                refs.append(((entry & TABLE_OFFSET_MASK) >> cb, 1))
    return refs
