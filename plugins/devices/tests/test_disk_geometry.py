"""The CHS geometry virtio-blk reports, guessed as QEMU's hd-geometry.c does."""

import struct

from arctern_devices.disk_geometry import guess_geometry, mbr_geometry, size_geometry


def mbr(end_head, end_sector, nr_sects=4064):
    sector = bytearray(512)
    sector[0x1BE : 0x1BE + 16] = struct.pack(
        "<8BII", 0x80, 0, 1, 0, 0x83, end_head, end_sector, 31, 32, nr_sects
    )
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def test_size_geometry_clamps_cylinders():
    assert size_geometry(8192) == (8, 16, 63)
    assert size_geometry(100) == (2, 16, 63)
    assert size_geometry(1 << 40) == (16383, 16, 63)


def test_partition_table_gives_the_logical_geometry():
    assert mbr_geometry(mbr(3, 32), 4096) == (32, 4, 32)
    assert guess_geometry(lambda: mbr(3, 32), 4096) == (32, 4, 32)


def test_lba_translated_or_missing_tables_fall_back_to_size():
    sectors = 255 * 63 * 10
    assert mbr_geometry(mbr(254, 63), sectors) == (10, 255, 63)
    assert guess_geometry(lambda: mbr(254, 63), sectors) == (159, 16, 63)  # LBA-translated
    assert guess_geometry(lambda: bytes(512), 8192) == (8, 16, 63)  # no 55aa
    assert mbr_geometry(mbr(3, 0), 4096) is None  # sector 0 is not a geometry
    assert mbr_geometry(mbr(3, 32, nr_sects=0), 4096) is None  # empty entry
