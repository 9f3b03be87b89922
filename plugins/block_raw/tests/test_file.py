"""The file protocol and raw format drivers, beyond the conformance kit."""

from __future__ import annotations

import os
import subprocess

import pytest

from arctern.block import create_image, open_image
from arctern.block.driver import STATUS_ALLOCATED, STATUS_DATA, STATUS_OFFSET_VALID, STATUS_ZERO
from arctern.config import BuildConfig
from arctern.errors import BlockError, OutOfRangeError, UsageError
from arctern.plugins import Registry

MiB = 1 << 20


@pytest.fixture(scope="module")
def registry():
    return Registry(BuildConfig(enable={"block": {"raw"}}), strict=True).discover(["block"])


@pytest.fixture
def raw(tmp_path, registry):
    path = str(tmp_path / "disk.raw")
    create_image(path, "raw", 4 * MiB, registry=registry)
    return path


def test_plugin_provides_file_and_raw(registry):
    assert registry.block_driver("file").protocol
    assert not registry.block_driver("raw").protocol


def test_block_status_follows_holes_and_data(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        b.pwrite(MiB, b"\x01" * 65536)
        hole = b.block_status(0, 4 * MiB)
        assert hole.flags & STATUS_ZERO and not hole.flags & STATUS_DATA
        assert hole.flags & STATUS_OFFSET_VALID and hole.flags & STATUS_ALLOCATED
        assert hole.length == MiB and hole.offset == 0
        data = b.block_status(MiB, 4 * MiB)
        assert data.flags & STATUS_DATA and data.length == 65536 and data.offset == MiB
        tail = b.block_status(MiB + 65536, 4 * MiB)
        assert tail.flags & STATUS_ZERO and tail.length == 3 * MiB - 65536


def test_block_status_length_is_clamped(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        assert b.block_status(4 * MiB - 10, 1 << 40).length == 10


def test_actual_size_counts_allocated_blocks(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        assert b.node.actual_size() == 0
        b.pwrite(0, b"\x01" * MiB)
        assert b.node.actual_size() >= MiB


def test_write_zeroes_past_the_end_of_the_file(tmp_path, registry):
    path = str(tmp_path / "f")
    create_image(path, "file", 1000, registry=registry)
    with open_image(path, fmt="file", registry=registry) as f:
        f.node.pwrite(0, memoryview(b"\x01" * 1000))
        f.node.pwrite_zeroes(500, 1500)
        assert f.length == 2000
        assert f.pread(0, 2000) == b"\x01" * 500 + bytes(1500)


def test_protocol_node_reads_zeroes_past_its_end(tmp_path, registry):
    path = str(tmp_path / "f")
    create_image(path, "file", 10, registry=registry)
    with open_image(path, fmt="file", registry=registry) as f:
        buf = bytearray(b"\xff" * 100)
        f.node.pread(5, memoryview(buf))
        assert buf == bytes(100)


@pytest.mark.parametrize("mode", ["off", "falloc", "full"])
def test_truncate_grows_and_shrinks(raw, registry, mode):
    with open_image(raw, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"keep")
        b.truncate(8 * MiB, preallocation=mode)
        assert b.length == 8 * MiB
        assert b.pread(0, 4) == b"keep" and b.pread(8 * MiB - 4, 4) == bytes(4)
        if mode != "off":
            assert b.node.actual_size() >= 4 * MiB
        b.truncate(2)
        assert b.length == 2 and b.pread(0, 2) == b"ke"


def test_metadata_preallocation_is_refused_by_file(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        with pytest.raises(UsageError, match="'metadata' is not supported"):
            b.truncate(8 * MiB, preallocation="metadata")


def test_invalidate_cache_drops_the_page_cache(raw, registry, monkeypatch):
    advice = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, how: advice.append(how))
    with open_image(raw, fmt="raw", active=False, registry=registry) as b:
        b.activate()
    assert advice == [os.POSIX_FADV_DONTNEED]
    advice.clear()
    with open_image(raw, fmt="raw", active=False, cache="none", registry=registry) as b:
        b.activate()
    assert advice == []  # O_DIRECT: there is no page cache to drop


def test_activation_sees_what_qemu_io_wrote(raw, registry):
    backend = open_image(raw, fmt="raw", active=False, registry=registry)
    assert backend.pread(MiB, 4) == bytes(4)
    subprocess.run(
        ["qemu-io", "-f", "raw", "-c", f"write -P 0x5a {MiB} 65536", raw],
        check=True,
        capture_output=True,
        timeout=30,
    )
    backend.activate()
    assert backend.pread(MiB, 65536) == b"\x5a" * 65536
    backend.pwrite(0, b"\x11" * 512)
    backend.close()
    check = subprocess.run(
        ["qemu-io", "-f", "raw", "-c", "read -P 0x11 0 512", raw],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "read 512/512 bytes at offset 0" in check.stdout


def test_io_errors_name_the_file(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as b:
        driver = b.node.file.driver
        real_fd = driver.fd
        read_end, write_end = os.pipe()  # an fd on which every file operation fails
        driver.fd = read_end
        try:
            with pytest.raises(BlockError, match=f"Could not read 4 bytes at offset 0 of '{raw}'"):
                b.node.pread(0, memoryview(bytearray(4)))
            with pytest.raises(BlockError, match=f"Could not write 2 bytes at offset 8 of '{raw}'"):
                b.node.pwrite(8, memoryview(b"no"))
            with pytest.raises(BlockError, match=f"Could not flush '{raw}'"):
                b.flush()
        finally:
            driver.fd = real_fd
            os.close(read_end)
            os.close(write_end)


def test_only_regular_files_and_block_devices(tmp_path, registry):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(BlockError, match=f"'file' driver requires '{path}' to be a regular"):
            open_image(path, fmt="raw", read_only=True, registry=registry)


def test_raw_offset_and_size_options_give_a_window_of_the_file(raw, registry):
    with open_image(raw, fmt="raw", registry=registry) as whole:
        whole.pwrite(MiB - 1, b"<" + b"w" * 512 + b">")
    window = {"offset": MiB, "size": 512}
    with open_image(raw, fmt="raw", options=window, registry=registry) as part:
        assert part.length == 512
        assert part.pread(0, 512) == b"w" * 512
        part.pwrite(0, b"W")
        with pytest.raises(OutOfRangeError):
            part.pwrite(512, b"x")
        with pytest.raises(BlockError, match="Cannot resize fixed-size raw disks"):
            part.truncate(1024)
        assert part.block_status(0, 512).offset == MiB
    with open_image(raw, fmt="raw", options={"offset": 4 * MiB - 100}, registry=registry) as tail:
        assert tail.length == 100
    with open_image(raw, fmt="raw", read_only=True, registry=registry) as whole:
        assert whole.pread(MiB - 1, 3) == b"<Ww"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"offset": -1}, "'offset' expects a non-negative number"),
        ({"size": "lots"}, "'size' expects a non-negative number"),
        ({"size": 1000}, "Specified size is not multiple of 512"),
        ({"offset": 5 * MiB}, r"Offset \(5242880\) cannot be greater than size"),
        ({"offset": MiB, "size": 4 * MiB}, r"The sum of offset \(1048576\) and size"),
    ],
)
def test_raw_window_errors(raw, registry, options, message):
    with pytest.raises(UsageError, match=message):
        open_image(raw, fmt="raw", options=options, registry=registry)
