"""Header features: dirty and corrupt bits, lazy refcounts, autoclear bits, unknown extensions."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from arctern.block import create_image, open_image
from arctern.errors import ImageFormatError, UsageError

MiB = 1 << 20


def _incompatible(path: str) -> int:
    with open(path, "rb") as f:
        f.seek(72)
        return struct.unpack(">Q", f.read(8))[0]


def test_lazy_refcounts_dirty_bit_set_on_write_cleared_on_flush_and_close(tools):
    path = tools.path("lazy.qcow2")
    create_image(path, "qcow2", 4 * MiB, {"lazy_refcounts": "on"})
    with open_image(path, fmt="qcow2") as image:
        assert _incompatible(path) & 1 == 0
        image.pwrite(0, b"a" * 70000)
        assert _incompatible(path) & 1  # on disk before any refcount is postponed
        image.flush()
        assert _incompatible(path) & 1 == 0
        image.pwrite(3 * MiB, b"b" * 5000)
        assert _incompatible(path) & 1
    assert _incompatible(path) & 1 == 0
    info = json.loads(tools.qemu_img("info", "--output=json", path).stdout)
    assert info["dirty-flag"] is False
    assert info["format-specific"]["data"]["lazy-refcounts"] is True
    tools.assert_qemu_check_clean(path)


def test_lazy_refcounts_inactive_writes_no_dirty_bit_until_activated(tools):
    path = tools.path("lazy.qcow2")
    create_image(path, "qcow2", 4 * MiB, {"lazy_refcounts": "on"})
    before = Path(path).read_bytes()
    with open_image(path, fmt="qcow2", active=False) as image:
        image.pread(0, 4096)
        assert Path(path).read_bytes() == before
        image.activate()
        image.pwrite(0, b"x")
        assert _incompatible(path) & 1
        image.inactivate()
        assert _incompatible(path) & 1 == 0
    tools.assert_qemu_check_clean(path)


def _dirty_image(tools, path: str) -> None:
    """What a killed lazy-refcounts writer leaves: dirty, and a refcount behind."""
    tools.qemu_create(path, "4M", "lazy_refcounts=on")
    tools.qemu_io(path, "write -P 0x41 0 1M")
    with open(path, "r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", 1))
        f.seek(0x20000 + 2 * 5)
        f.write(struct.pack(">H", 0))
    assert tools.qemu_img("check", path, ok=(2,)).returncode == 2


def test_dirty_image_is_repaired_at_read_write_open(tools):
    path = tools.path("dirty.qcow2")
    _dirty_image(tools, path)
    with open_image(path, fmt="qcow2", read_only=True) as image:  # read as is, untouched
        assert image.node.driver.info().dirty
        assert image.pread(0, MiB) == b"\x41" * MiB
    assert _incompatible(path) & 1
    with open_image(path, fmt="qcow2") as image:
        assert not image.node.driver.info().dirty
    tools.assert_qemu_check_clean(path)


def test_dirty_image_activated_is_repaired_at_first_write(tools):
    """Activation writes nothing; the repair waits for the first write."""
    path = tools.path("dirty.qcow2")
    _dirty_image(tools, path)
    with open_image(path, fmt="qcow2", active=False) as image:
        image.activate()
        assert _incompatible(path) & 1
        image.pwrite(2 * MiB, b"\x42" * 4096)
    assert _incompatible(path) & 1 == 0
    tools.assert_qemu_check_clean(path)


def test_corrupt_bit_refuses_read_write_open(tools):
    path = tools.path("corrupt.qcow2")
    create_image(path, "qcow2", MiB, {})
    with open(path, "r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", 2))
    with pytest.raises(ImageFormatError, match="corrupt"):
        open_image(path, fmt="qcow2")
    with open_image(path, fmt="qcow2", read_only=True) as image:
        assert image.node.driver.info().format_specific["data"]["corrupt"] is True
        assert image.pread(0, 512) == bytes(512)


def test_unknown_autoclear_bits_cleared_at_read_write_open_only(tools):
    path = tools.path("autoclear.qcow2")
    create_image(path, "qcow2", MiB, {})
    with open(path, "r+b") as f:
        f.seek(88)
        f.write(struct.pack(">Q", (1 << 7) | 1))

    def autoclear() -> int:
        with open(path, "rb") as f:
            f.seek(88)
            return struct.unpack(">Q", f.read(8))[0]

    open_image(path, fmt="qcow2", read_only=True).close()
    open_image(path, fmt="qcow2", active=False).close()
    assert autoclear() == (1 << 7) | 1
    open_image(path, fmt="qcow2").close()
    assert autoclear() == 0


def test_unknown_header_extension_survives_writes_and_resize(tools):
    path = tools.path("ext.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", path, "1M")
    original = Path(path).read_bytes()
    end = original.index(struct.pack(">II", 0x6803F857, 0x180)) + 8 + 0x180
    ext = struct.pack(">II", 0x12345678, 5) + b"hello\0\0\0"
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(ext + bytes(8))
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(0, b"q" * 100000)
        image.truncate(64 * MiB)
    assert Path(path).read_bytes()[end : end + len(ext)] == ext
    tools.assert_qemu_check_clean(path)
    with open_image(path, fmt="qcow2", read_only=True) as image:
        assert image.node.driver.h.unknown_extensions == [(0x12345678, b"hello")]
        assert image.length == 64 * MiB


@pytest.mark.parametrize(
    "size,options,tables",
    [
        (1 << 30, {}, (2, 4)),  # L2 covering the disk (128 KiB), QEMU's 4 refcount blocks
        (1 << 40, {}, (512, 4)),  # capped at 32 MiB
        (1 << 30, {"l2-cache-size": "1M"}, (16, 4)),
        (1 << 30, {"cache-size": "1M"}, (2, 14)),  # L2 takes what covers the disk
        (1 << 30, {"cache-size": "1M", "l2-cache-size": "512k"}, (8, 8)),
        (1 << 30, {"refcount-cache-size": 131072}, (2, 2)),
    ],
)
def test_cache_sizes_as_qemu(tools, size, options, tables):
    path = tools.path("cache.qcow2")
    create_image(path, "qcow2", size, {})
    with open_image(path, fmt="qcow2", read_only=True, options=options) as image:
        driver = image.node.driver
        assert (driver.map.cache.capacity, driver.refcounts.cache.capacity) == tables


@pytest.mark.parametrize(
    "options",
    [
        {"l2-cache-size": "lots"},
        {"cache-size": "1M", "l2-cache-size": "512k", "refcount-cache-size": "512k"},
        {"cache-size": "64k", "l2-cache-size": "1M"},
    ],
)
def test_bad_cache_options_are_refused(tools, options):
    path = tools.path("cache.qcow2")
    create_image(path, "qcow2", MiB, {})
    with pytest.raises(UsageError):
        open_image(path, fmt="qcow2", read_only=True, options=options)
