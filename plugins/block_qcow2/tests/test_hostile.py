"""Damaged and hostile images: one clear error, never a traceback, a hang or a huge allocation."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from arctern.block import open_image
from arctern.cli import img
from arctern.errors import ArcternError, ImageFormatError

KiB, MiB = 1 << 10, 1 << 20

# The base image (qemu-img create, 64 KiB clusters, 4 MiB, data at 0 and 1 MiB) has the
# header at 0, refcount table at 0x10000, refcount block at 0x20000, L1 at 0x30000,
# the first L2 table at 0x40000.
HEADER_CASES = {
    "bad-magic": [(0, b"QFI\x00")],
    "version-4": [(4, struct.pack(">I", 4))],
    "cluster-bits-8": [(20, struct.pack(">I", 8))],
    "cluster-bits-22": [(20, struct.pack(">I", 22))],
    "huge-l1-size": [(36, struct.pack(">I", 0x7FFFFFFF))],
    "l1-too-small": [(36, struct.pack(">I", 0))],
    "l1-unaligned": [(40, struct.pack(">Q", 0x30200))],
    "l1-past-eof": [(40, struct.pack(">Q", 0x7FFF0000))],
    "reftable-huge": [(56, struct.pack(">I", 0xFFFFFFF))],
    "reftable-past-eof": [(48, struct.pack(">Q", 1 << 40))],
    "reftable-unaligned": [(48, struct.pack(">Q", 0x10008))],
    "reftable-none": [(56, struct.pack(">I", 0))],
    "refcount-order-7": [(96, struct.pack(">I", 7))],
    "header-length-odd": [(100, struct.pack(">I", 105))],
    "header-length-huge": [(100, struct.pack(">I", 1 << 20))],
    "encrypted": [(32, struct.pack(">I", 1))],
    "backing-name-too-long": [(8, struct.pack(">QI", 0x200, 5000))],
    "backing-name-outside-cluster": [(8, struct.pack(">QI", 0xFFF0, 0x100))],
    "too-many-snapshots": [(60, struct.pack(">IQ", 1 << 20, 0x50000))],
    "snapshots-past-eof": [(60, struct.pack(">IQ", 10, 1 << 40))],
    "extension-too-long": [(112, struct.pack(">II", 0x12345678, 0xFFFFFF))],
    "compression-type-bit-without-field": [(72, struct.pack(">Q", 1 << 3))],
    "external-data-file": [(72, struct.pack(">Q", 1 << 2))],
}

TABLE_CASES = {
    "l2-past-eof": [(0x30000, struct.pack(">Q", (1 << 63) | 0x7FFF0000))],
    "l2-unaligned": [(0x30000, struct.pack(">Q", (1 << 63) | 0x40200))],
    "data-unaligned": [(0x40000, struct.pack(">Q", (1 << 63) | 0x50200))],
    "compressed-garbage": [(0x40000, struct.pack(">Q", (1 << 62) | (5 << 54) | 0x50000))],
    # Guest data mapped onto the L2 table itself: writing it must not destroy the table.
    "data-on-l2-table": [(0x40000, struct.pack(">Q", (1 << 63) | 0x40000))],
    # The L2 table's cluster claims refcount 0: the allocator must not hand it out for data.
    "l2-table-refcount-zero": [(0x20000 + 2 * 4, struct.pack(">H", 0))],
    # A refcount block that is also the L2 table.
    "refblock-is-l2-table": [(0x10000, struct.pack(">Q", 0x40000))],
}


@pytest.fixture
def base(tools) -> str:
    path = tools.path("base.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", path, "4M")
    tools.qemu_io(path, "write -P 0x61 0 128k", "write -P 0x62 1M 64k")
    return path


def _patched(base: str, patches, name: str) -> str:
    path = str(Path(base).with_name(f"{name}.qcow2"))
    shutil.copy(base, path)
    with open(path, "r+b") as f:
        for offset, data in patches:
            f.seek(offset)
            f.write(data)
    return path


def _use(path: str) -> None:
    """What a guest and the tools do with an image: read all, write, check."""
    with open_image(path, fmt="qcow2") as image:
        image.pread(0, image.length)
        image.pwrite(12345, b"x" * 70000)
        image.pwrite(2 * MiB, b"z")  # allocates one cluster (the first free one)
        image.pwrite(3 * MiB, b"y" * 70000)  # allocates a run of clusters
        image.flush()
    with open_image(path, fmt="qcow2") as image:
        image.node.driver.check()


def _assert_cli_one_line(path: str, capsys) -> None:
    """Every arctern-img subcommand returns (no exception escapes) with one error line."""
    for args in (["info"], ["check"], ["map", "--output=json"], ["convert", "-O", "raw"]):
        extra = [path + ".out"] if args[0] == "convert" else []
        capsys.readouterr()
        rc = img.main([*args, "-f", "qcow2", path, *extra])
        err = capsys.readouterr().err
        if rc and args[0] != "check":  # check lists what it found
            assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_bad_header_is_refused_at_open(base, case):
    path = _patched(base, HEADER_CASES[case], case)
    with pytest.raises(ImageFormatError) as err:
        open_image(path, fmt="qcow2", read_only=True).close()
    message = str(err.value)
    assert "\n" not in message and path in message


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_bad_tables_fail_cleanly_on_use(base, case):
    path = _patched(base, TABLE_CASES[case], case)
    with open(path, "rb") as f:
        f.seek(0x40000)
        l2_before = f.read(65536)
    with pytest.raises(ImageFormatError) as err:
        _use(path)
    assert "\n" not in str(err.value)
    with open(path, "rb") as f:
        f.seek(0x40000)
        assert f.read(65536) == l2_before  # the L2 table was never overwritten


@pytest.mark.parametrize("case", ["bad-magic", "huge-l1-size", "l1-past-eof", "l2-past-eof"])
def test_arctern_img_gives_one_line(base, case, capsys):
    patches = HEADER_CASES.get(case) or TABLE_CASES[case]
    _assert_cli_one_line(_patched(base, patches, case), capsys)


@pytest.mark.parametrize("length", [0, 10, 71, 100, 0x10008, 0x30004])
def test_truncated_image(base, length, capsys):
    path = _patched(base, [], f"truncated{length}")
    with open(path, "r+b") as f:
        f.truncate(length)
    with pytest.raises(ArcternError):
        _use(path)
    _assert_cli_one_line(path, capsys)


def test_unknown_incompatible_feature_is_named(base):
    """The name comes from the image's feature-name table when it has one."""
    path = _patched(base, [(72, struct.pack(">Q", 1 << 9))], "future")
    with open(path, "r+b") as f:
        f.seek(0x70)
        table = f.read(8)
        magic, length = struct.unpack(">II", table)
        assert magic == 0x6803F857
        f.seek(0x78 + length)  # append one entry to the table
        f.write(bytes([0, 9]) + b"time travel".ljust(46, b"\0"))
        f.seek(0x74)
        f.write(struct.pack(">I", length + 48))
    with pytest.raises(ImageFormatError, match="time travel"):
        open_image(path, fmt="qcow2", read_only=True)
    path = _patched(base, [(72, struct.pack(">Q", 1 << 40))], "future2")
    with pytest.raises(ImageFormatError, match="bit 40"):
        open_image(path, fmt="qcow2", read_only=True)


def test_refcount_table_pointing_at_itself(base):
    """A refcount block entry that points at the refcount table is refused, not written."""
    path = _patched(base, [(0x10000, struct.pack(">Q", 0x10000))], "loop")
    with pytest.raises(ArcternError):
        _use(path)


def test_metadata_overwrite_marks_image_corrupt(base):
    """Guest data mapped onto the L2 table: the write is refused and the image marked corrupt."""
    path = _patched(base, TABLE_CASES["data-on-l2-table"], "overlap")
    with open_image(path, fmt="qcow2") as image:
        with pytest.raises(ImageFormatError, match="overwrite image metadata"):
            image.pwrite(0, b"x" * 512)
        with pytest.raises(ImageFormatError, match="corrupt"):
            image.pwrite(MiB, b"y")
    with open(path, "rb") as f:
        f.seek(72)
        assert struct.unpack(">Q", f.read(8))[0] & 2  # the corrupt bit
    with pytest.raises(ImageFormatError, match="corrupt"):
        open_image(path, fmt="qcow2")
