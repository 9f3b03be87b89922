"""Randomly damaged metadata: every failure is one ArcternError line, never another exception.

Bytes and whole 8-byte fields of a small image made by qemu-img (data, a compressed
cluster, zero clusters, an internal snapshot) are overwritten at random, mostly in
the metadata at the start of the file; then the image is read, written, zeroed,
discarded, checked, resized and repaired.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from arctern.block import open_image
from arctern.errors import ArcternError

MiB = 1 << 20
ATTEMPTS = 25
SHAPES = ["cluster_size=4096", "cluster_size=512,refcount_bits=8", "compat=0.10,cluster_size=1024"]


@pytest.fixture(params=SHAPES)
def base_image(request, tools) -> bytes:
    path = tools.path("base.qcow2")
    tools.qemu_create(path, "4M", request.param)
    tools.qemu_io(path, "write -P 0x61 0 200k", "write -c 1M 64k", "write -P 0x62 2M 8k")
    tools.qemu_img("snapshot", "-c", "s1", path)
    tools.qemu_io(path, "write -P 0x33 100k 300k")
    return Path(path).read_bytes()


def _exercise(path: Path) -> None:
    with open_image(str(path), fmt="qcow2", discard="unmap") as image:
        image.pread(0, image.length)
        image.node.driver.block_status(0, image.length)
        image.pwrite(70_000, b"w" * 100_000)
        image.pwrite(3 * MiB, b"v" * 5000)
        image.pwrite_zeroes(0, 65536)
        image.pdiscard(MiB, MiB)
        image.flush()
        image.node.driver.check()
        image.node.driver.info()
        image.truncate(8 * MiB)
        image.node.driver.check("all")


def _timeout(*_) -> None:
    raise TimeoutError("a damaged image made the driver hang")


@pytest.mark.parametrize("seed", range(3))
def test_random_metadata_damage(base_image, tmp_path, seed):
    rng = random.Random(seed)
    previous = signal.signal(signal.SIGALRM, _timeout)
    try:
        for attempt in range(ATTEMPTS):
            damaged = bytearray(base_image)
            for _ in range(rng.randrange(1, 5)):
                span = 0x10000 if rng.random() < 0.7 else len(damaged)
                pos = rng.randrange(min(span, len(damaged))) // 8 * 8
                if rng.random() < 0.5:
                    damaged[pos : pos + 8] = rng.randbytes(8)
                else:
                    damaged[pos + rng.randrange(8)] = rng.randrange(256)
            path = tmp_path / f"damaged{attempt}.qcow2"
            path.write_bytes(damaged)
            signal.alarm(20)
            try:
                _exercise(path)
            except ArcternError as exc:
                assert "\n" not in str(exc)
            finally:
                signal.alarm(0)
            path.unlink()
    finally:
        signal.signal(signal.SIGALRM, previous)
