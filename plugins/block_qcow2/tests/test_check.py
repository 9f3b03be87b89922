"""check() finds what qemu-img check finds, and repairs what qemu-img check -r repairs."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from arctern.block import create_image, open_image
from arctern.cli import img

MiB = 1 << 20
REPORT_KEYS = (
    "image-end-offset",
    "total-clusters",
    "allocated-clusters",
    "fragmented-clusters",
    "compressed-clusters",
    "leaks",
    "corruptions",
)


def _ours(path: str, fix: str = "") -> dict:
    with open_image(path, fmt="qcow2", read_only=not fix) as image:
        result = image.node.driver.check(fix)
    return {
        "image-end-offset": result.image_end_offset,
        "total-clusters": result.total_clusters,
        "allocated-clusters": result.allocated_clusters,
        "fragmented-clusters": result.fragmented_clusters,
        "compressed-clusters": result.compressed_clusters,
        "leaks": result.leaks,
        "corruptions": result.corruptions,
    }


def _theirs(tools, path: str) -> dict:
    report = json.loads(tools.qemu_img("check", "--output=json", path, ok=(0, 2, 3)).stdout)
    return {key: report.get(key, 0) for key in REPORT_KEYS}


@pytest.fixture
def qemu_image(tools) -> str:
    """Data, zero clusters, a compressed cluster, fragmentation and an internal snapshot."""
    path = tools.path("mixed.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "8M")
    tools.qemu_io(
        path,
        "write -P 1 0 100000",
        "write -z 200000 50000",
        "write -c 1M 64k",
        "write -P 2 5M 8k",
        "write -P 3 300k 8k",
        "write -z -u 5M 4k",
    )
    tools.qemu_img("snapshot", "-c", "snap", path)
    tools.qemu_io(path, "write -P 4 0 10000")
    return path


def test_counts_match_qemu(tools, qemu_image, random_io):
    assert _ours(qemu_image) == _theirs(tools, qemu_image)
    path = tools.path("ours.qcow2")
    create_image(path, "qcow2", 8 * MiB, {"cluster_size": 4096})
    with open_image(path, fmt="qcow2", discard="unmap") as image:
        random_io(image, bytearray(8 * MiB), seed=3, count=50, cluster_size=4096)
    assert _ours(path) == _theirs(tools, path)


def _refcount_entry(cluster: int) -> int:
    """File offset of cluster's 16-bit refcount in a default image (refcount block 0x20000)."""
    return 0x20000 + 2 * cluster


def test_leak_found_and_repaired(tools, qemu_image):
    path = tools.path("leak.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", path, "4M")
    tools.qemu_io(path, "write -P 7 0 64k")
    with open(path, "r+b") as f:
        f.seek(_refcount_entry(0))
        f.write(struct.pack(">H", 2))  # the header cluster: one reference, refcount 2
        f.seek(_refcount_entry(40))
        f.write(struct.pack(">H", 1))  # a cluster nobody uses (past the end of the file)
        f.seek(_refcount_entry(5))
        f.write(struct.pack(">H", 3))  # a cluster nobody uses
    assert _ours(path) == _theirs(tools, path)
    assert _ours(path)["leaks"] == 2
    assert _ours(path, fix="leaks")["leaks"] == 0
    tools.assert_qemu_check_clean(path)


def test_corruption_found_and_repaired(tools):
    path = tools.path("corrupt.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", path, "4M")
    tools.qemu_io(path, "write -P 7 0 128k")  # L2 at cluster 4, data at 5 and 6
    with open(path, "r+b") as f:
        f.seek(_refcount_entry(6))
        f.write(struct.pack(">H", 0))  # used data cluster: refcount 0
        f.seek(0x40000)
        entry = struct.unpack(">Q", f.read(8))[0]
        f.seek(0x40000)
        f.write(struct.pack(">Q", entry & ~(1 << 63)))  # cluster 5: COPIED missing, refcount 1
    ours, theirs = _ours(path), _theirs(tools, path)
    assert ours == theirs
    assert ours["corruptions"] == 3  # refcount 0 < 1, and two COPIED flags wrong
    assert _ours(path, fix="leaks")["corruptions"] == 3  # -r leaks leaves corruptions alone
    assert _ours(path, fix="all")["corruptions"] == 0
    tools.assert_qemu_check_clean(path)
    assert tools.read_all(path)[: 128 * 1024] == b"\x07" * 128 * 1024


def test_arctern_img_check_exit_codes(tools, qemu_image, capsys):
    """Our check through arctern-img: the exit codes qemu-img uses (0 clean, 3 leaks)."""
    assert img.main(["check", qemu_image]) == 0
    leaky = tools.path("leaky.qcow2")
    shutil.copy(qemu_image, leaky)
    with open_image(leaky, fmt="qcow2") as image:
        image.node.driver.refcounts.update(0, 1, 1)  # the header cluster: refcount 2
        image.flush()
    assert img.main(["check", leaky]) == 3
    assert "Leaked cluster 0 refcount=2 reference=1" in capsys.readouterr().err
    assert tools.qemu_img("check", leaky, ok=(3,)).returncode == 3
    assert img.main(["check", "-r", "leaks", leaky]) == 0
    tools.assert_qemu_check_clean(leaky)


def test_persistent_bitmap_clusters_are_references(tools):
    """Bitmap clusters count while the bitmaps are valid; once we write, they are stale leaks."""
    path = tools.path("bitmap.qcow2")
    tools.qemu_create(path, "4M")
    tools.qemu_io(path, "write 0 1M")
    tools.qemu_img("bitmap", "--add", path, "b0")
    tools.qemu_io(path, "write 1M 64k")
    assert _ours(path) == _theirs(tools, path)
    assert _ours(path)["leaks"] == 0
    info = json.loads(tools.qemu_img("info", "--output=json", path).stdout)
    with open_image(path, fmt="qcow2", read_only=True) as image:
        assert image.node.driver.info().format_specific == info["format-specific"]
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(2 * MiB, b"x" * 4096)  # clears the bitmaps' autoclear bit
    assert _ours(path) == _theirs(tools, path)
    assert _ours(path, fix="leaks")["leaks"] == 0
    tools.assert_qemu_check_clean(path)
