"""BlockBackend: any buffer type, bounds checks, statistics."""

from __future__ import annotations

import array
import mmap

import pytest

from arctern.block import create_image, open_image
from arctern.errors import BlockError, OutOfRangeError


@pytest.fixture
def backend(tmp_path, registry):
    path = str(tmp_path / "disk.raw")
    create_image(path, "raw", 65536, registry=registry)
    with open_image(path, fmt="raw", registry=registry) as b:
        yield b


def test_any_buffer_type(backend):
    backend.pwrite(0, b"bytes")
    backend.pwrite(5, bytearray(b"array"))
    backend.pwrite(10, memoryview(b"..view..")[2:6])
    backend.pwrite(14, array.array("H", [0x4241, 0x4443]))  # 4 bytes, little-endian
    assert backend.pread(0, 18) == b"bytesarrayviewABCD"
    words = array.array("I", [0, 0])
    backend.preadinto(0, words)
    assert words.tobytes() == b"bytesarr"
    area = mmap.mmap(-1, 4096)
    backend.preadinto(0, area)
    assert area[:5] == b"bytes"
    area.close()


def test_out_of_range_message_names_the_image(backend):
    with pytest.raises(OutOfRangeError) as info:
        backend.pread(65530, 10)
    assert str(info.value) == (
        f"read of 10 bytes at offset 65530 is out of range for '{backend.filename}' (size 65536)"
    )
    with pytest.raises(OutOfRangeError):
        backend.pread(0, 1 << 62)  # refused before anything is allocated
    with pytest.raises(OutOfRangeError):
        backend.block_status(65536, 1)


def test_stats_count_requests_like_query_blockstats(backend):
    backend.pwrite(0, bytes(1000))
    backend.pwrite_zeroes(4096, 512)
    backend.pread(0, 100)
    backend.preadinto(0, bytearray(28))
    backend.pdiscard(0, 4096)
    backend.flush()
    stats = backend.stats
    assert (stats["wr_bytes"], stats["wr_operations"]) == (1512, 2)
    assert (stats["rd_bytes"], stats["rd_operations"]) == (128, 2)
    assert (stats["unmap_bytes"], stats["unmap_operations"]) == (4096, 1)
    assert stats["flush_operations"] == 1
    assert stats["rd_total_time_ns"] > 0 and stats["wr_total_time_ns"] > 0


def test_refused_requests_are_not_counted(backend):
    with pytest.raises(OutOfRangeError):
        backend.pwrite(65536, b"x")
    assert backend.stats["wr_operations"] == 0


def test_block_status_of_a_driver_must_make_progress(backend, monkeypatch):
    from arctern.block.driver import BlockStatus

    monkeypatch.setattr(backend.node.driver, "block_status", lambda o, n: BlockStatus(1, 0))
    with pytest.raises(BlockError, match="reported a status run of 0 bytes"):
        backend.block_status(0, 4096)
