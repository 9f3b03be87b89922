"""Images created and written by Arctern pass ``qemu-img check`` and compare equal."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from arctern.block import create_image, open_image

KiB, MiB = 1 << 10, 1 << 20


def test_random_io_passes_qemu_check_and_compare(tools, random_io, image_shape):
    compat, cluster, bits = image_shape
    size = max(4 * MiB, 6 * cluster) + 1536
    path = tools.path("ours.qcow2")
    create_image(
        path, "qcow2", size, {"compat": compat, "cluster_size": cluster, "refcount_bits": bits}
    )
    expected = bytearray(size)
    with open_image(path, fmt="qcow2", discard="unmap") as image:
        random_io(image, expected, seed=cluster + bits, count=60, cluster_size=cluster)
        assert image.pread(0, size) == expected
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, bytes(expected))
    # Reopened (cold caches) it reads the same, and qemu-io can keep writing into it.
    assert tools.read_all(path) == expected
    tools.qemu_io(path, "write -P 0x5c 100 5000")
    expected[100:5100] = b"\x5c" * 5000
    assert tools.read_all(path) == expected


def test_small_caches_many_tables(tools, random_io):
    """Two-entry caches over 512-byte clusters: every request evicts dirty tables."""
    size = 6 * MiB
    path = tools.path("evict.qcow2")
    create_image(path, "qcow2", size, {"cluster_size": 512, "refcount_bits": 64})
    expected = bytearray(size)
    options = {"l2-cache-size": 1024, "refcount-cache-size": 1024}
    with open_image(path, fmt="qcow2", discard="unmap", options=options) as image:
        random_io(image, expected, seed=7, count=80, cluster_size=512)
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, bytes(expected))


def test_refcount_table_growth(tools):
    """512-byte clusters and 64-bit refcounts: 6 MiB of data needs several table moves."""
    size = 8 * MiB
    path = tools.path("grow.qcow2")
    create_image(path, "qcow2", size, {"cluster_size": 512, "refcount_bits": 64})
    data = bytes(range(256)) * (6 * MiB // 256)
    with open_image(path, fmt="qcow2") as image:
        for offset in range(0, len(data), 256 * KiB):
            image.pwrite(offset, data[offset : offset + 256 * KiB])
    info = json.loads(tools.qemu_img("check", "--output=json", path).stdout)
    assert info["allocated-clusters"] == len(data) // 512
    tools.assert_qemu_compare(path, data + bytes(size - len(data)))


@pytest.mark.parametrize("base_fmt", ["qcow2", "raw"])
def test_backing_chain_writes(tools, base_fmt):
    """COW of partial clusters from the backing file; zeroes and discards hide it."""
    base = tools.path(f"base.{base_fmt}")
    tools.qemu_img("create", "-q", "-f", base_fmt, base, "2M")
    tools.qemu_io(base, "write -P 0x33 0 2M", fmt=base_fmt)
    top = tools.path("top.qcow2")
    create_image(
        top,
        "qcow2",
        3 * MiB,
        {"backing_file": f"base.{base_fmt}", "backing_fmt": base_fmt, "cluster_size": 4096},
    )
    expected = bytearray(b"\x33" * (2 * MiB) + bytes(MiB))
    with open_image(top, fmt="qcow2", discard="unmap") as image:
        image.pwrite(5000, b"\xaa" * 100)
        expected[5000:5100] = b"\xaa" * 100
        image.pwrite(2 * MiB - 10, b"\xbb" * 20)
        expected[2 * MiB - 10 : 2 * MiB + 10] = b"\xbb" * 20
        image.pwrite_zeroes(8192, 8192)
        expected[8192:16384] = bytes(8192)
        image.pdiscard(65536, 4096)
        expected[65536 : 65536 + 4096] = bytes(4096)
        assert image.pread(0, 3 * MiB) == expected
    tools.assert_qemu_check_clean(top)
    assert tools.raw_by_qemu(top) == expected
    info = json.loads(tools.qemu_img("info", "--output=json", top).stdout)
    assert info["backing-filename"] == f"base.{base_fmt}"
    assert info["backing-filename-format"] == base_fmt


def test_writes_into_image_with_snapshot(tools):
    """Writing over clusters and L2 tables shared with an internal snapshot copies them."""
    path = tools.path("snap.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", path, "4M")
    tools.qemu_io(path, "write -P 0x21 0 2M")
    tools.qemu_img("snapshot", "-c", "s1", path)
    with open_image(path, fmt="qcow2", discard="unmap") as image:
        image.pwrite(1000, b"\x99" * 70000)
        image.pdiscard(1 << 20, 65536)
    tools.assert_qemu_check_clean(path)
    expected = bytearray(b"\x21" * (2 * MiB) + bytes(2 * MiB))
    expected[1000:71000] = b"\x99" * 70000
    expected[MiB : MiB + 65536] = bytes(65536)
    assert tools.raw_by_qemu(path) == expected
    tools.qemu_img("snapshot", "-a", "s1", path)
    assert tools.raw_by_qemu(path) == b"\x21" * (2 * MiB) + bytes(2 * MiB)


@pytest.mark.parametrize("mode", ["metadata", "falloc", "full"])
def test_preallocation_matches_qemu(tools, mode):
    ours, theirs = tools.path("ours.qcow2"), tools.path("theirs.qcow2")
    create_image(ours, "qcow2", 3 * MiB, {"preallocation": mode})
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", f"preallocation={mode}", theirs, "3M")
    tools.assert_qemu_check_clean(ours)
    ours_map = json.loads(tools.qemu_img("map", "--output=json", ours).stdout)
    theirs_map = json.loads(tools.qemu_img("map", "--output=json", theirs).stdout)
    assert ours_map == theirs_map


def test_resize_grows_l1_and_keeps_data(tools):
    path = tools.path("resize.qcow2")
    create_image(path, "qcow2", MiB, {"cluster_size": 512})
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(MiB - 100, b"\x42" * 100)
        image.truncate(40 * MiB)
        image.pwrite(39 * MiB, b"\x43" * 4096)
    tools.assert_qemu_check_clean(path)
    expected = bytearray(40 * MiB)
    expected[MiB - 100 : MiB] = b"\x42" * 100
    expected[39 * MiB : 39 * MiB + 4096] = b"\x43" * 4096
    tools.assert_qemu_compare(path, bytes(expected))


def test_large_unaligned_write_over_backing_data(tools):
    """A multi-MiB write with partial end clusters: both ends copied from the backing file."""
    base = tools.path("base.raw")
    tools.qemu_img("create", "-q", "-f", "raw", base, "8M")
    tools.qemu_io(base, "write -P 0x44 0 8M", fmt="raw")
    top = tools.path("top.qcow2")
    create_image(
        top,
        "qcow2",
        8 * MiB,
        {"backing_file": "base.raw", "backing_fmt": "raw", "cluster_size": 4096},
    )
    expected = bytearray(b"\x44" * (8 * MiB))
    data = bytes(range(256)) * (3 * MiB // 256) + b"\x01" * 1001
    with open_image(top, fmt="qcow2") as image:
        image.pwrite(123_457, data)
        expected[123_457 : 123_457 + len(data)] = data
        assert image.pread(0, 8 * MiB) == expected
    tools.assert_qemu_check_clean(top)
    assert tools.raw_by_qemu(top) == expected


def test_shrink_drops_clusters_and_l2_tables(tools):
    path = tools.path("shrink.qcow2")
    create_image(path, "qcow2", 16 * MiB, {"cluster_size": 4096})
    data = bytes(range(256)) * (16 * MiB // 256)
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(0, data)
        image.truncate(3 * MiB + 512)  # inside an L2 table's range, not on a cluster boundary
        assert image.length == 3 * MiB + 512
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, data[: 3 * MiB + 512])
    report = json.loads(tools.qemu_img("check", "--output=json", path).stdout)
    assert report["allocated-clusters"] == (3 * MiB + 4096) // 4096
    assert report["image-end-offset"] == Path(path).stat().st_size  # the tail went back
    with open_image(path, fmt="qcow2") as image:
        image.truncate(8 * MiB)  # grown again: the dropped data does not come back
        assert image.pread(3 * MiB, 5 * MiB) == data[3 * MiB : 3 * MiB + 512] + bytes(5 * MiB - 512)
    tools.assert_qemu_check_clean(path)


def test_growing_over_a_longer_backing_file_reads_zeroes(tools):
    base = tools.path("base.raw")
    tools.qemu_create(base, "4M", fmt="raw")
    tools.qemu_io(base, "write -P 0x66 0 4M", fmt="raw")
    top = tools.path("top.qcow2")
    create_image(top, "qcow2", MiB + 512, {"backing_file": "base.raw", "backing_fmt": "raw"})
    with open_image(top, fmt="qcow2") as image:
        image.truncate(6 * MiB)
        expected = b"\x66" * (MiB + 512) + bytes(5 * MiB - 512)
        assert image.pread(0, 6 * MiB) == expected
    tools.assert_qemu_check_clean(top)
    assert tools.raw_by_qemu(top) == expected


@pytest.mark.parametrize("cluster", [512, 65536])
def test_qemu_io_and_arctern_take_turns(tools, random_io, cluster):
    """Rounds of qemu-io writes and Arctern writes on one image: both read what the other
    wrote, allocate around each other's clusters and leave it clean."""
    size = 6 * MiB
    path = tools.path("turns.qcow2")
    tools.qemu_create(path, size, f"cluster_size={cluster}")
    expected = bytearray(size)
    rng = random.Random(cluster)
    for turn in range(4):
        commands = []
        for i in range(8):
            length = rng.choice((1, 700, cluster, 3 * cluster + 11, 100_000))
            offset = rng.randrange(size - length)
            value = (turn * 16 + i) % 255 + 1
            commands.append(f"write -P {value} {offset} {length}")
            expected[offset : offset + length] = bytes([value]) * length
        offset = rng.randrange(size - 4 * cluster) // cluster * cluster
        commands.append(f"write -z {offset} {2 * cluster}")
        expected[offset : offset + 2 * cluster] = bytes(2 * cluster)
        tools.qemu_io(path, *commands)
        with open_image(path, fmt="qcow2", discard="unmap") as image:
            assert image.pread(0, size) == expected
            random_io(image, expected, seed=turn, count=15, cluster_size=cluster)
        tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, bytes(expected))


def test_writers_on_several_threads(tools):
    """Requests from four threads at once (allocating, copy on write, flushes): no lost
    update of the shared tables, a clean image, every thread's data."""
    import threading

    size = 8 * MiB
    path = tools.path("threads.qcow2")
    create_image(path, "qcow2", size, {"cluster_size": 4096})
    expected = bytearray(size)
    with open_image(path, fmt="qcow2", options={"l2-cache-size": 8192}) as image:

        def writer(n: int) -> None:
            rng = random.Random(n)
            for i in range(60):  # each thread owns every fourth 64 KiB stretch
                stretch = (rng.randrange(size // 65536 // 4) * 4 + n) * 65536
                offset = stretch + rng.randrange(60000)
                data = bytes([n * 60 + i % 60 + 1]) * rng.randrange(1, 5536)
                image.pwrite(offset, data)
                expected[offset : offset + len(data)] = data
                if i % 20 == 19:
                    image.flush()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert image.pread(0, size) == expected
    tools.assert_qemu_check_clean(path)
    tools.assert_qemu_compare(path, bytes(expected))
