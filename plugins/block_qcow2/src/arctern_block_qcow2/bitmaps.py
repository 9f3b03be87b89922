"""The clusters persistent dirty bitmaps hold, so that check counts them as QEMU does.

The driver does not use bitmaps (it clears their autoclear bit on its first
write, which tells QEMU they are stale), but while that bit is set their
directory, bitmap tables and data clusters are references like any other:
without them ``check -r leaks`` would free clusters QEMU still uses.
"""

from __future__ import annotations

import struct

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L

_EXTENSION = struct.Struct(">IIQQ")
_ENTRY = struct.Struct(">QIIBBHI")
#: QEMU's limits on the number of bitmaps and the directory size.
MAX_BITMAPS = 65535
MAX_DIRECTORY_BYTES = 64 << 20
TABLE_OFFSET_MASK = 0x00FFFFFFFFFFFE00


def bitmap_references(file, h, filename: str) -> list[tuple[int, int]]:
    """(first cluster, count) of every cluster the bitmaps extension references."""

    def bad(msg: str) -> ImageFormatError:
        return ImageFormatError(f"qcow2 image '{filename}': bitmaps: {msg}")

    data = next((d for m, d in h.unknown_extensions if m == L.EXT_BITMAPS), None)
    if data is None or not h.autoclear_features & L.AUTOCLEAR_BITMAPS:
        return []
    if len(data) < _EXTENSION.size:
        raise bad("extension too short")
    count, _, dir_size, dir_offset = _EXTENSION.unpack_from(data)
    cs, cb = h.cluster_size, h.cluster_bits
    length = file.getlength()
    if count > MAX_BITMAPS or dir_size > MAX_DIRECTORY_BYTES or dir_offset % cs:
        raise bad("invalid bitmap directory")
    if dir_offset + dir_size > length:
        raise bad("bitmap directory lies past the end of the file")
    refs = [(dir_offset >> cb, -(-dir_size // cs))]
    directory = bytearray(dir_size)
    file.pread(dir_offset, memoryview(directory))
    pos = 0
    for _ in range(count):
        if pos + _ENTRY.size > dir_size:
            raise bad("truncated bitmap directory")
        table_offset, table_size, _, _, _, name_size, extra = _ENTRY.unpack_from(directory, pos)
        pos += _ENTRY.size + extra + name_size
        pos += -pos % 8
        if table_offset % cs or table_offset + table_size * 8 > length:
            raise bad("invalid bitmap table")
        refs.append((table_offset >> cb, -(-table_size * 8 // cs)))
        table = bytearray(table_size * 8)
        file.pread(table_offset, memoryview(table))
        for (entry,) in struct.iter_unpack(">Q", table):
            if entry & TABLE_OFFSET_MASK:
                refs.append(((entry & TABLE_OFFSET_MASK) >> cb, 1))
    return refs
