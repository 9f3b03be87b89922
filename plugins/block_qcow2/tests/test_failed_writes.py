"""A write that fails while allocating, then is retried, leaves no leaked cluster.

The protocol node below the qcow2 driver behaves like a file under RLIMIT_FSIZE:
a write reaching past the limit stores what lies below it, then fails with
EFBIG. That is what a guest with ``werror=stop`` meets; ``cont`` replays the
request once the limit is lifted. Like QEMU (qcow2_alloc_cluster_abort), the
driver gives back the clusters it allocated for the failed request, so
``qemu-img check`` finds the image clean afterwards.
"""

from __future__ import annotations

import errno
import os
import random

import pytest

from arctern.block import create_image, open_image
from arctern.errors import BlockError

CLUSTER = 4096
SIZE = 4 << 20


class FileSizeLimit:
    """Makes the protocol driver's writes fail past ``limit`` (EFBIG) until lifted."""

    def __init__(self, driver, limit: int) -> None:
        self.limit: int | None = limit
        self._pwrite, self._truncate = driver.pwrite, driver.truncate
        self.failures = 0
        driver.pwrite, driver.truncate = self.pwrite, self.truncate

    def pwrite(self, offset: int, data: memoryview) -> None:
        end = offset + len(data)
        if self.limit is None or end <= self.limit:
            self._pwrite(offset, data)
            return
        if offset < self.limit:
            self._pwrite(offset, data[: self.limit - offset])
        raise self._efbig(f"Could not write {len(data)} bytes at offset {offset}")

    def truncate(self, size: int, **kwargs) -> None:
        if self.limit is not None and size > self.limit:
            raise self._efbig(f"Could not resize to {size} bytes")
        self._truncate(size, **kwargs)

    def _efbig(self, message: str) -> BlockError:
        self.failures += 1
        error = BlockError(message)
        error.__cause__ = OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        return error


def limit_growth(protocol, clusters: int, cluster_size: int = CLUSTER) -> FileSizeLimit:
    """Let the file grow by ``clusters`` clusters past its last (partial) cluster, no more."""
    end = -(-protocol.getlength() // cluster_size) * cluster_size
    return FileSizeLimit(protocol.driver, end + clusters * cluster_size)


def _fresh_image(path: str, data: bytes, compat: str = "1.1") -> None:
    """An image whose first MiB holds ``data`` (one L2 table in use, more space after)."""
    create_image(path, "qcow2", SIZE, {"cluster_size": CLUSTER, "compat": compat})
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(0, data)


#: Guest offset in the first L2 table (which covers 2 MiB), past the data written.
FREE = 3 << 19
#: (guest offset, length, clusters the file may still grow by before writes fail).
REQUESTS = {
    "new-cluster": (FREE, CLUSTER, 0),
    "partial-cluster": (FREE + 100, 1000, 0),  # copy on write of the rest of the cluster
    # Across two L2 tables: the first cluster, the new L2 table, the other four.
    "run-first-cluster": ((2 << 20) - 3000, 5 * CLUSTER, 0),
    "run-new-l2": ((2 << 20) - 3000, 5 * CLUSTER, 1),
    "run-rest": ((2 << 20) - 3000, 5 * CLUSTER, 2),  # part of it lands below the limit
    "new-l2": (SIZE - CLUSTER, CLUSTER, 0),
    "new-l2-data": (SIZE - CLUSTER, CLUSTER, 1),
}


@pytest.mark.parametrize("compat", ["1.1", "0.10"])
@pytest.mark.parametrize("request_", REQUESTS.values(), ids=REQUESTS.keys())
def test_retried_write_leaves_the_image_clean(tools, tmp_path, compat, request_):
    """The write fails once the file would grow past the limit, then succeeds."""
    path = str(tmp_path / "disk.qcow2")
    base = random.Random(1).randbytes(1 << 20)
    _fresh_image(path, base, compat)
    offset, length, room = request_
    payload = random.Random(2).randbytes(length)
    with open_image(path, fmt="qcow2") as image:
        limit = limit_growth(image.node.file, room)
        with pytest.raises(BlockError, match="Could not write"):
            image.pwrite(offset, payload)
        assert limit.failures
        limit.limit = None  # the limit is lifted; the request is replayed
        image.pwrite(offset, payload)
    tools.assert_qemu_check_clean(path)
    expected = bytearray(SIZE)
    expected[: len(base)] = base
    expected[offset : offset + length] = payload
    tools.assert_qemu_compare(path, bytes(expected))


def test_failed_write_never_reached_the_l2_table(tools, tmp_path):
    """Closed right after the failure (no retry): the guest still reads the old content."""
    path = str(tmp_path / "disk.qcow2")
    base = random.Random(1).randbytes(1 << 20)
    _fresh_image(path, base)
    with open_image(path, fmt="qcow2") as image:
        limit_growth(image.node.file, 1)
        with pytest.raises(BlockError):
            image.pwrite(FREE, bytes([7]) * 3 * CLUSTER)
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, base + bytes(SIZE - len(base)))


def test_failed_compressed_write_is_given_back(tools, tmp_path):
    path = str(tmp_path / "disk.qcow2")
    base = random.Random(1).randbytes(1 << 20)
    _fresh_image(path, base)
    packable = b"compressible " * (CLUSTER // 13) + bytes(CLUSTER % 13)
    with open_image(path, fmt="qcow2") as image:
        limit = limit_growth(image.node.file, 0)
        driver = image.node.driver
        with pytest.raises(BlockError):
            driver.pwrite_compressed(FREE, memoryview(packable))
        limit.limit = None
        driver.pwrite_compressed(FREE, memoryview(packable))
    tools.assert_qemu_check_clean(path)
    expected = bytearray(base + bytes(SIZE - len(base)))
    expected[FREE : FREE + CLUSTER] = packable
    tools.assert_qemu_compare(path, bytes(expected))


@pytest.mark.parametrize("refcount_bits", [16, 64])
def test_failure_anywhere_in_a_growing_write(tools, tmp_path, refcount_bits):
    """Small clusters: a write needs data clusters, L2 tables and refcount blocks (64
    clusters a block at 64 bits); the file limit falls at each step in turn."""
    payload = random.Random(3).randbytes(40_000)
    offset = 5 << 20
    expected = bytearray(8 << 20)
    expected[offset : offset + len(payload)] = payload
    for room in range(0, 90, 2):
        path = str(tmp_path / f"disk{room}.qcow2")
        options = {"cluster_size": 512, "refcount_bits": refcount_bits}
        create_image(path, "qcow2", 8 << 20, options)
        with open_image(path, fmt="qcow2") as image:
            limit = limit_growth(image.node.file, room, 512)
            try:
                image.pwrite(offset, payload)
            except BlockError:
                limit.limit = None
                image.pwrite(offset, payload)
        tools.assert_qemu_check_clean(path)
        assert tools.read_all(path) == expected
    assert limit.failures == 0  # the last rooms were enough: every step was failed once


#: (preallocation, clusters the file may grow by): the new L1 table fails, or (with
#: preallocation) the clusters after it.
RESIZES = [("off", 0), ("metadata", 0), ("metadata", 1), ("full", 0), ("full", 1)]


@pytest.mark.parametrize(("preallocation", "room"), RESIZES)
def test_retried_resize_leaves_the_image_clean(tools, tmp_path, preallocation, room):
    """Growing 1 MiB to 4 MiB needs a bigger L1 table; the first try fails."""
    path = str(tmp_path / "disk.qcow2")
    create_image(path, "qcow2", 1 << 20, {"cluster_size": CLUSTER})
    with open_image(path, fmt="qcow2") as image:
        limit = limit_growth(image.node.file, room)
        with pytest.raises(BlockError, match="Could not"):
            image.truncate(SIZE, preallocation)
        limit.limit = None
        image.truncate(SIZE, preallocation)
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, bytes(SIZE))
