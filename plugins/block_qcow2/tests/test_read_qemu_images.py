"""Images made by qemu-img/qemu-io read byte-identical to ``qemu-img convert -O raw``."""

from __future__ import annotations

import json
import random

import pytest

from arctern.block import open_image

KiB, MiB = 1 << 10, 1 << 20


def _scribble(tools, path: str, size: int, cluster: int, seed: int, zeroes: bool) -> None:
    """Writes with qemu-io at awkward offsets, plus zero clusters (v3) and discards."""
    rng = random.Random(seed)
    commands = []
    for _ in range(10):
        length = rng.choice((1, 700, cluster, 3 * cluster + 123))
        offset = rng.randrange(0, size - length)
        commands.append(f"write -P 0x{rng.randrange(1, 255):02x} {offset} {length}")
    if zeroes:
        commands.append(f"write -z {2 * cluster} {2 * cluster}")
        commands.append(f"write -z -u {size - 4 * cluster} {4 * cluster}")
    commands.append(f"discard {cluster} {cluster}")
    tools.qemu_io(path, *commands)


def test_qemu_made_image_reads_identical(tools, image_shape):
    compat, cluster, bits = image_shape
    size = max(8 * MiB, 6 * cluster) + 3 * 512
    path = tools.path("img.qcow2")
    tools.qemu_create(path, size, f"compat={compat},cluster_size={cluster},refcount_bits={bits}")
    _scribble(tools, path, size, cluster, seed=cluster + bits, zeroes=compat == "1.1")
    assert tools.read_all(path) == tools.raw_by_qemu(path)


@pytest.mark.parametrize("backing_fmt", ["qcow2", "raw"])
def test_backing_chain_reads_identical(tools, backing_fmt):
    """base (qcow2 or raw) <- mid (qcow2, larger) <- top (qcow2, larger still, relative names)."""
    base = tools.path(f"base.{backing_fmt}")
    tools.qemu_create(base, 3 * MiB, fmt=backing_fmt)
    tools.qemu_io(base, "write -P 0x11 0 3M", fmt=backing_fmt)
    mid, top = tools.path("mid.qcow2"), tools.path("top.qcow2")
    tools.qemu_create(
        mid, 4 * MiB, "cluster_size=4096", backing=f"base.{backing_fmt}", backing_fmt=backing_fmt
    )
    _scribble(tools, mid, 4 * MiB, 4096, seed=1, zeroes=True)
    tools.qemu_create(top, 5 * MiB, backing="mid.qcow2")
    tools.qemu_io(
        top, "write -P 0x77 1000 70000", "write -z 2097152 65536", "write -P 0x78 4194000 600000"
    )
    assert tools.read_all(top) == tools.raw_by_qemu(top)


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
@pytest.mark.parametrize("cluster", [4 * KiB, 64 * KiB, 2 * MiB])
def test_compressed_image_reads_identical(tools, compression, cluster):
    source = tools.path("source.raw")
    rng = random.Random(cluster)
    content = bytearray(6 * MiB)
    for _ in range(40):
        offset = rng.randrange(0, len(content) - 50_000)
        content[offset : offset + 50_000] = bytes([rng.randrange(256)]) * 30_000 + rng.randbytes(
            20_000
        )
    with open(source, "wb") as f:
        f.write(content)
    path = tools.path("compressed.qcow2")
    tools.qemu_img(
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-o",
        f"cluster_size={cluster},compression_type={compression}",
        source,
        path,
    )
    assert tools.read_all(path) == bytes(content)


def test_internal_snapshot_image(tools):
    """The active layer of an image with a snapshot (shared L2 tables and data clusters)."""
    path = tools.path("snap.qcow2")
    tools.qemu_create(path, "4M")
    tools.qemu_io(path, "write -P 0x21 0 2M")
    tools.qemu_img("snapshot", "-c", "s1", path)
    tools.qemu_io(path, "write -P 0x22 65536 100000")
    assert tools.read_all(path) == tools.raw_by_qemu(path)
    theirs = json.loads(tools.qemu_img("info", "--output=json", path).stdout)["snapshots"]
    with open_image(path, fmt="qcow2", read_only=True) as image:
        assert image.node.driver.info().snapshots == theirs
