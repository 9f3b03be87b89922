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
        self._pwrite = driver.pwrite
        self.failures = 0
        driver.pwrite = self.pwrite

    def pwrite(self, offset: int, data: memoryview) -> None:
        end = offset + len(data)
        if self.limit is None or end <= self.limit:
            self._pwrite(offset, data)
            return
        if offset < self.limit:
            self._pwrite(offset, data[: self.limit - offset])
        self.failures += 1
        exc = OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        raise BlockError(f"Could not write {len(data)} bytes at offset {offset}") from exc


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
        protocol = image.node.file
        limit = FileSizeLimit(protocol.driver, protocol.getlength() + room * CLUSTER)
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
        protocol = image.node.file
        FileSizeLimit(protocol.driver, protocol.getlength() + CLUSTER)
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
        protocol = image.node.file
        limit = FileSizeLimit(protocol.driver, protocol.getlength())
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
            protocol = image.node.file
            limit = FileSizeLimit(protocol.driver, protocol.getlength() + room * 512)
            try:
                image.pwrite(offset, payload)
            except BlockError:
                limit.limit = None
                image.pwrite(offset, payload)
        tools.assert_qemu_check_clean(path)
        assert tools.read_all(path) == expected
    assert limit.failures == 0  # the last rooms were enough: every step was failed once
