"""Open options: cache modes, discard, detect-zeroes, probing, and the errors of bad ones."""

from __future__ import annotations

import logging
import os

import pytest

from arctern.block import create_image, open_image
from arctern.block.driver import STATUS_DATA, STATUS_ZERO
from arctern.errors import BlockError, ImageFormatError, NotFoundError, UsageError

O_DIRECT = 0o40000
MiB = 1 << 20


@pytest.fixture
def raw(tmp_path, registry):
    path = str(tmp_path / "disk.raw")
    create_image(path, "raw", MiB, registry=registry)
    return path


@pytest.fixture
def fdatasyncs(monkeypatch):
    calls = []
    real = os.fdatasync

    def counting(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def open_flags(backend) -> int:
    fd = backend.node.file.driver.fd
    with open(f"/proc/self/fdinfo/{fd}") as info:
        return int(next(line for line in info if line.startswith("flags:")).split()[1], 8)


@pytest.mark.parametrize(
    "cache, direct",
    [
        ("writeback", False),
        ("none", True),
        ("directsync", True),
        ("writethrough", False),
        ("unsafe", False),
    ],
)
def test_cache_mode_selects_o_direct(raw, registry, cache, direct):
    with open_image(raw, fmt="raw", cache=cache, registry=registry) as b:
        assert bool(open_flags(b) & O_DIRECT) == direct
        assert (b.node.file.driver.request_alignment > 1) == direct


def test_o_direct_unaligned_io_and_unaligned_file_end(tmp_path, registry):
    path = str(tmp_path / "odd.raw")
    create_image(path, "raw", 10_000, registry=registry)  # not a multiple of any sector
    with open_image(path, fmt="raw", cache="none", registry=registry) as b:
        b.pwrite(3, b"abc")
        b.pwrite(9_990, b"0123456789")  # the last, partial block
        b.pwrite(4000, b"x" * 5000)  # crosses block boundaries at both ends
        assert b.pread(0, 8) == b"\0\0\0abc\0\0"
        assert b.pread(9_990, 10) == b"0123456789"
        assert b.pread(3999, 5002) == b"\0" + b"x" * 5000 + b"\0"
        assert b.length == 10_000
    assert os.path.getsize(path) == 10_000  # the read-modify-write did not grow the file
    data = open(path, "rb").read()
    assert data[3:6] == b"abc" and data[-10:] == b"0123456789"


def test_unsafe_never_syncs(raw, registry, fdatasyncs):
    with open_image(raw, fmt="raw", cache="unsafe", registry=registry) as b:
        b.pwrite(0, b"x")
        b.flush()
    assert fdatasyncs == []


def test_writeback_syncs_on_flush_only(raw, registry, fdatasyncs):
    with open_image(raw, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"x")
        b.pwrite(1, b"y")
        assert fdatasyncs == []
        b.flush()
        assert len(fdatasyncs) == 1


@pytest.mark.parametrize("cache", ["writethrough", "directsync"])
def test_writethrough_modes_sync_every_write(raw, registry, fdatasyncs, cache):
    with open_image(raw, fmt="raw", cache=cache, registry=registry) as b:
        b.pwrite(0, b"x")
        b.pwrite_zeroes(512, 512)
        assert len(fdatasyncs) == 2


def test_discard_unmap_punches_holes(raw, registry):
    with open_image(raw, fmt="raw", discard="unmap", registry=registry) as b:
        b.pwrite(0, b"\x01" * MiB)
        b.flush()
        allocated = b.node.actual_size()
        b.pdiscard(0, MiB // 2)
        assert b.block_status(0, MiB).flags & STATUS_ZERO
        assert b.node.actual_size() <= allocated - MiB // 2
        assert b.pread(0, MiB // 2) == bytes(MiB // 2)
        assert b.pread(MiB // 2, 4) == b"\x01" * 4


def test_discard_ignore_keeps_data(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"\x01" * 4096)
        b.pdiscard(0, 4096)
        assert b.pread(0, 4096) == b"\x01" * 4096


def test_detect_zeroes_unmap_turns_zero_writes_into_holes(raw, registry):
    with open_image(raw, fmt="raw", discard="unmap", detect_zeroes="unmap", registry=registry) as b:
        b.pwrite(0, b"\x01" * 65536)
        b.pwrite(0, bytes(65536))
        status = b.block_status(0, 65536)
        assert status.flags & STATUS_ZERO and not status.flags & STATUS_DATA
        b.pwrite(0, bytes(100) + b"\x02")  # not all zero: written as data
        assert b.pread(100, 1) == b"\x02"


def test_detect_zeroes_off_writes_zero_data(raw, registry):
    with open_image(raw, fmt="raw", discard="unmap", registry=registry) as b:
        b.pwrite(0, bytes(65536))
        assert b.block_status(0, 65536).flags & STATUS_DATA


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cache": "sometimes"}, "Invalid cache mode 'sometimes'"),
        ({"discard": "maybe"}, "Invalid discard mode 'maybe'"),
        ({"detect_zeroes": "yes"}, "Invalid detect-zeroes mode 'yes'"),
        ({"detect_zeroes": "unmap"}, "detect-zeroes to unmap is not allowed without"),
        ({"options": {"nonsense": 1}}, "Invalid parameter 'nonsense' for format 'raw'"),
        ({"options": {"file.nonsense": 1}}, "Invalid parameter 'file.nonsense'"),
    ],
)
def test_bad_open_options(raw, registry, kwargs, message):
    with pytest.raises(UsageError, match=message):
        open_image(raw, fmt="raw", registry=registry, **kwargs)
    open_image(raw, fmt="raw", registry=registry).close()  # nothing left locked


def test_open_errors_name_the_file(tmp_path, registry):
    missing = str(tmp_path / "missing.raw")
    with pytest.raises(BlockError, match=f"Could not open '{missing}': No such file or directory"):
        open_image(missing, registry=registry)
    # As QEMU's file driver: a directory opened read-only is refused for what it is,
    # and open(2) itself refuses it for writing.
    with pytest.raises(BlockError, match=f"'file' driver requires '{tmp_path}' to be a regular"):
        open_image(str(tmp_path), fmt="raw", read_only=True, registry=registry)
    with pytest.raises(BlockError, match=f"Could not open '{tmp_path}': Is a directory"):
        open_image(str(tmp_path), fmt="raw", registry=registry)
    with pytest.raises(NotFoundError, match="unknown block driver 'vmdk'"):
        open_image(missing, fmt="vmdk", registry=registry)


def test_wrong_format_is_a_format_error(raw, registry):
    with pytest.raises(ImageFormatError, match="not a cowtest image"):
        open_image(raw, fmt="cowtest", registry=registry)


def test_probing_finds_the_format_and_warns_for_raw(tmp_path, raw, registry, caplog):
    top = str(tmp_path / "top.cowtest")
    create_image(top, "cowtest", MiB, registry=registry)
    with caplog.at_level(logging.WARNING, logger="arctern.block"):
        with open_image(top, registry=registry) as b:
            assert b.node.format_name == "cowtest"
        assert not caplog.records
        with open_image(raw, registry=registry) as b:
            assert b.node.format_name == "raw" and b.node.probed
    assert "probing guessed raw" in caplog.text


def test_probed_raw_refuses_to_become_another_format(raw, registry):
    header = b"ARCOWTST" + bytes(504)
    with open_image(raw, registry=registry) as probed:
        with pytest.raises(BlockError, match="would make it probe as 'cowtest'"):
            probed.pwrite(0, header)
        probed.pwrite(512, header)  # elsewhere is fine
        probed.pwrite(0, b"plain data")
    with open_image(raw, fmt="raw", registry=registry) as explicit:
        explicit.pwrite(0, header)  # the user said raw: their choice
    assert open(raw, "rb").read(8) == b"ARCOWTST"


def test_create_errors(tmp_path, registry):
    path = str(tmp_path / "x.raw")
    with pytest.raises(UsageError, match="Invalid parameter 'cluster_size' for format 'raw'"):
        create_image(path, "raw", MiB, {"cluster_size": 65536}, registry=registry)
    with pytest.raises(UsageError, match="Invalid image size"):
        create_image(path, "raw", -1, registry=registry)
    with pytest.raises(UsageError, match="Invalid preallocation mode 'lots'"):
        create_image(path, "raw", MiB, {"preallocation": "lots"}, registry=registry)
    with pytest.raises(
        BlockError, match="Could not create .*no/dir.raw.: No such file or directory"
    ):
        create_image(str(tmp_path / "no" / "dir.raw"), "raw", MiB, registry=registry)


def test_create_replaces_an_existing_image(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"old")
    create_image(raw, "raw", 4096, registry=registry)
    assert open(raw, "rb").read() == bytes(4096)


@pytest.mark.parametrize("mode, allocated", [("off", False), ("falloc", True), ("full", True)])
def test_create_preallocation(tmp_path, registry, mode, allocated):
    path = str(tmp_path / f"{mode}.raw")
    create_image(path, "raw", 4 * MiB, {"preallocation": mode}, registry=registry)
    assert os.path.getsize(path) == 4 * MiB
    assert (os.stat(path).st_blocks * 512 >= 4 * MiB) == allocated


def test_o_direct_read_modify_writes_from_several_threads_lose_nothing(raw, registry):
    """Threads writing single bytes into the same sectors: every byte survives, because
    overlapping read-modify-writes are serialised; each gets its own bounce memory."""
    import threading

    threads_count, per_thread = 4, 300

    def worker(backend, index):
        for k in range(per_thread):
            backend.pwrite(k * threads_count + index, bytes([index + 1]))

    with open_image(raw, fmt="raw", cache="none", registry=registry) as b:
        threads = [threading.Thread(target=worker, args=(b, n)) for n in range(threads_count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = bytes(range(1, threads_count + 1)) * per_thread
        assert b.pread(0, len(expected)) == expected


def test_inactivation_syncs_unless_unsafe(raw, registry, fdatasyncs):
    with open_image(raw, fmt="raw", cache="unsafe", registry=registry) as b:
        b.pwrite(0, b"x")
        b.inactivate()
    assert fdatasyncs == []
    with open_image(raw, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"x")
        b.inactivate()
    assert fdatasyncs  # the format node's write-back flush, then the file node's own
