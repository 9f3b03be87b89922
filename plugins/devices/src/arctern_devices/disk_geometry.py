"""The CHS geometry QEMU reports for a disk (hw/block/hd-geometry.c), for virtio-blk's config.

QEMU looks at the MBR first: a partition table whose entries end on a
cylinder boundary with at most 16 heads gives the geometry; otherwise (no
MBR, or an LBA-translated layout) it uses 16 heads, 63 sectors and as many
cylinders as fit, between 2 and 16383.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from arctern.errors import ArcternError

SECTOR = 512
_PARTITION = struct.Struct(
    "<BBBBBBBBII"
)  # boot, head, sector, cyl, type, end head/sector/cyl, start, size


def size_geometry(sectors: int) -> tuple[int, int, int]:
    """QEMU's guess_chs_for_size: 16 heads, 63 sectors, 2..16383 cylinders."""
    return max(2, min(16383, sectors // (16 * 63))), 16, 63


def mbr_geometry(mbr: bytes, sectors: int) -> tuple[int, int, int] | None:
    """QEMU's guess_disk_lchs: the logical geometry an MBR's partitions imply, or None."""
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return None
    for i in range(4):
        fields = _PARTITION.unpack_from(mbr, 0x1BE + 16 * i)
        end_head, end_sector, nr_sects = fields[5], fields[6], fields[9]
        if not nr_sects or not end_head:
            continue
        heads, secs = end_head + 1, end_sector & 63
        if not secs:
            continue
        cylinders = sectors // (heads * secs)
        if 1 <= cylinders <= 16383:
            return cylinders, heads, secs
    return None


def guess_geometry(read_sector0: Callable[[], bytes], sectors: int) -> tuple[int, int, int]:
    """hd_geometry_guess for an image file: the MBR's geometry if it has <= 16 heads."""
    try:
        guess = mbr_geometry(read_sector0(), sectors) if sectors else None
    except ArcternError:  # an unreadable first sector is "no MBR", as in QEMU
        guess = None
    if guess is None or guess[1] > 16:
        return size_geometry(sectors)
    return guess
