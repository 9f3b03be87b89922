"""The migration hand-over: an inactive destination re-reads everything on activation."""

from __future__ import annotations

from pathlib import Path

import pytest

from arctern.block import create_image, open_image
from arctern.errors import ImageFormatError

MiB = 1 << 20


def test_activation_sees_new_tables_and_allocates_after_them(tools):
    """The source grows L2 tables and refcount blocks the destination cached nothing of."""
    path = tools.path("shared.qcow2")
    create_image(path, "qcow2", 16 * MiB, {"cluster_size": 512, "refcount_bits": 16})
    expected = bytearray(16 * MiB)
    source = open_image(path, fmt="qcow2")
    source.pwrite(0, b"\x01" * 100_000)
    expected[:100_000] = b"\x01" * 100_000
    source.flush()
    dest = open_image(path, fmt="qcow2", active=False)
    assert dest.pread(0, 16 * MiB) == expected  # warm every cache of the destination
    # The source keeps running: new L2 tables, new refcount blocks, a refcount table move.
    for i in range(40):
        data = bytes([i + 2]) * 250_000
        source.pwrite(i * 300_000 + 1234, data)
        expected[i * 300_000 + 1234 : i * 300_000 + 251_234] = data
    assert source.node.driver.h.refcount_table_offset != 512  # the table did move
    source.inactivate()
    source.close()
    frozen = Path(path).read_bytes()
    dest.pread(0, 16 * MiB)
    assert Path(path).read_bytes() == frozen  # still inactive: nothing written
    dest.activate()
    assert dest.pread(0, 16 * MiB) == expected
    for i in range(40):  # allocations must not reuse what the source allocated
        data = bytes([i + 100]) * 5000
        dest.pwrite(i * 300_000 + 260_000, data)
        expected[i * 300_000 + 260_000 : i * 300_000 + 265_000] = data
    dest.close()
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, bytes(expected))


def test_failed_migration_source_takes_image_back(tools):
    """Inactivate (flushed, clean), let qemu-io write, re-activate: the source sees it."""
    path = tools.path("back.qcow2")
    create_image(path, "qcow2", 4 * MiB, {"lazy_refcounts": "on"})
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(0, b"a" * 4096)
        image.inactivate()
        tools.assert_qemu_check_clean(path)
        tools.qemu_io(path, "write -P 0x62 1M 64k")
        image.activate()
        assert image.pread(MiB, 65536) == b"b" * 65536
        image.pwrite(2 * MiB, b"c" * 65536)
    tools.assert_qemu_check_clean(path)
    expected = bytearray(4 * MiB)
    expected[:4096] = b"a" * 4096
    expected[MiB : MiB + 65536] = b"b" * 65536
    expected[2 * MiB : 2 * MiB + 65536] = b"c" * 65536
    tools.assert_qemu_compare(path, bytes(expected))


def test_failed_activation_leaves_the_node_inactive_and_readable(tools):
    """The source left a corrupt header: activation fails, old view still readable, retry ok."""
    path = tools.path("bad.qcow2")
    create_image(path, "qcow2", MiB, {})
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(0, b"\x07" * 4096)
    good = Path(path).read_bytes()
    with open_image(path, fmt="qcow2", active=False) as dest:
        with open(path, "r+b") as f:
            f.write(b"XXXX")  # the magic
        with pytest.raises(ImageFormatError):
            dest.activate()
        assert not dest.node.active
        assert dest.pread(0, 4096) == b"\x07" * 4096
        Path(path).write_bytes(good)
        dest.activate()
        dest.pwrite(4096, b"\x08")
    tools.assert_qemu_check_clean(path)
