"""arctern-img measure prints what qemu-img measure 7.2 prints."""

from __future__ import annotations

import pytest


@pytest.fixture
def sources(tools):
    """A qcow2 overlay (data in partial clusters, a zero cluster, a backing file), a
    qcow2 image with persistent bitmaps and a sparse raw file."""
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 1M", "base.qcow2"))
    tools.ok(
        tools.qemu_img(
            "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"
        )
    )
    writes = ("write -P 9 3M 4k", "write -P 9 3076k 4k", "write -z 2M 64k")
    tools.ok(tools.qemu_io(*[a for w in writes for a in ("-c", w)], "top.qcow2"))
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "bitmaps.qcow2", "64M"))
    tools.ok(tools.qemu_img("bitmap", "--add", "bitmaps.qcow2", "b0"))
    tools.ok(tools.qemu_img("bitmap", "--add", "-g", "512k", "bitmaps.qcow2", "a-longer-name"))
    with open(tools.cwd / "sparse.raw", "wb") as f:
        f.truncate(8 << 20)
        for offset in range(0, 8 << 20, 320 << 10):
            f.seek(offset + 4096)
            f.write(b"\x5a" * 6000)


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "1G", "-O", "qcow2"],
        ["--size", "100M", "-O", "qcow2", "-o", "cluster_size=512,refcount_bits=64"],
        ["--size", "5T", "-O", "qcow2", "-o", "cluster_size=2M"],
        ["--size", "1G", "-O", "qcow2", "-o", "preallocation=falloc"],
        ["--size", "1G"],
        ["-O", "qcow2", "top.qcow2"],
        ["-O", "qcow2", "--output=json", "top.qcow2"],
        ["-O", "qcow2", "-o", "compat=0.10", "top.qcow2"],
        ["-O", "raw", "top.qcow2"],
        ["-O", "qcow2", "-o", "cluster_size=4k,refcount_bits=1", "sparse.raw"],
        ["-O", "qcow2", "-o", "preallocation=full", "sparse.raw"],
        ["-O", "qcow2", "bitmaps.qcow2"],
        ["-O", "qcow2", "-o", "cluster_size=4k", "--output=json", "bitmaps.qcow2"],
        ["-O", "qcow2", "--size", "1G", "top.qcow2"],
        ["-O", "qcow2"],
    ],
)
def test_measure_matches(tools, sources, args):
    ours, theirs = tools.img("measure", *args), tools.qemu_img("measure", *args)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("arctern-img:", "qemu-img:") == theirs.err


def test_measured_size_holds_a_converted_image(tools, sources):
    """The point of measure: a converted image never needs more than "required"."""
    for source in ("top.qcow2", "sparse.raw"):
        required = int(tools.ok(tools.img("measure", "-O", "qcow2", source)).split()[2])
        tools.ok(tools.img("convert", "-O", "qcow2", source, "out.qcow2"))
        assert (tools.cwd / "out.qcow2").stat().st_size <= required
