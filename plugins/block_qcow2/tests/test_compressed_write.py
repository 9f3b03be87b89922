"""Writing compressed clusters (convert -c): qemu-img reads them, checks them clean."""

from __future__ import annotations

import json
import random

import pytest

from arctern.block import create_image, open_image
from arctern.cli import img

MiB = 1 << 20


def _mixed_content(size: int, seed: int) -> bytes:
    """Random (incompressible), text-like (compressible) and zero stretches."""
    rng = random.Random(seed)
    stretch = 256 * 1024
    out = bytearray(size)
    for offset in range(0, size, stretch):
        kind = rng.random()
        if kind < 0.3:
            out[offset : offset + stretch] = rng.randbytes(stretch)
        elif kind < 0.7:
            text = b"qcow2 %d " % offset
            out[offset : offset + stretch] = (text * (stretch // len(text) + 1))[:stretch]
    assert len(out) == size
    return bytes(out)


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
@pytest.mark.parametrize("cluster", [4096, 65536])
def test_convert_compressed_reads_back_in_qemu(tools, compression, cluster):
    source = tools.path("source.raw")
    content = _mixed_content(8 * MiB, cluster)
    with open(source, "wb") as f:
        f.write(content)
    target = tools.path("compressed.qcow2")
    options = f"cluster_size={cluster},compression_type={compression}"
    assert (
        img.main(["convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, source, target]) == 0
    )
    report = json.loads(tools.qemu_img("check", "--output=json", target).stdout)
    assert report.get("compressed-clusters", 0) > 0
    assert "leaks" not in report and "corruptions" not in report
    assert tools.raw_by_qemu(target) == content
    assert tools.read_all(target) == content


def test_overwriting_compressed_clusters_frees_them(tools):
    path = tools.path("overwrite.qcow2")
    create_image(path, "qcow2", 2 * MiB, {"cluster_size": 4096})
    content = bytearray(b"abcdefgh" * (2 * MiB // 8))
    with open_image(path, fmt="qcow2", discard="unmap") as image:
        image.node.driver.pwrite_compressed(1000, memoryview(content)[1000 : MiB + 7])
        image.pwrite(5000, b"\x01" * 100)  # copy on write out of a compressed cluster
        content[5000:5100] = b"\x01" * 100
        image.pwrite_zeroes(65536, 65536)  # compressed clusters become zero clusters
        content[65536:131072] = bytes(65536)
        image.pdiscard(200 * 1024, 64 * 1024)
        content[200 * 1024 : 264 * 1024] = bytes(64 * 1024)
        content[:1000] = bytes(1000)
        content[MiB + 7 :] = bytes(len(content) - MiB - 7)
        assert image.pread(0, 2 * MiB) == content
    tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == content
