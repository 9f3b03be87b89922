"""The tool-level interop matrix of issue 3.

* images made by qemu-img (v2/v3, cluster sizes 512 B..2 MiB, refcount widths
  1..64, backing chains, zero clusters, compressed zlib/zstd) convert to raw
  byte-identically with arctern-img and with qemu-img;
* images created and written by arctern-img/arctern-io (same matrix, random
  writes, partial clusters, discards, backing chains) pass ``qemu-img check``
  with exit 0 and ``qemu-img compare`` equal to the same operations done by
  qemu-img/qemu-io.
"""

from __future__ import annotations

import random

import pytest

MATRIX = [
    ("1.1", "64k", 16),
    ("0.10", "64k", 16),
    ("1.1", "512", 16),
    ("0.10", "4k", 16),
    ("1.1", "4k", 1),
    ("1.1", "64k", 64),
    ("1.1", "2M", 64),
    ("1.1", "2M", 1),
]
SIZE = 8 << 20


def options(compat, cluster, refcount_bits):
    return f"compat={compat},cluster_size={cluster},refcount_bits={refcount_bits}"


def script(seed: int, size: int = SIZE, discards: bool = True, zero_writes: bool = True):
    """qemu-io commands: random writes of random patterns, partial clusters, zeroes, discards."""
    rng = random.Random(seed)
    commands = []
    for _ in range(24):
        offset = rng.randrange(0, size - 300_000)
        length = rng.choice([1, 512, 4096, 65536, rng.randrange(1, 300_000)])
        kind = rng.random()
        if zero_writes and kind < 0.15:
            commands.append(f"write -z {offset} {length}")
        elif discards and kind < 0.3:
            aligned = offset & ~0xFFFF
            commands.append(f"discard {aligned} {rng.choice([65536, 131072, 1 << 20])}")
        else:
            commands.append(f"write -P {rng.randrange(1, 256)} {offset} {length}")
    return [arg for c in commands for arg in ("-c", c)]


def qemu_overlay(tools, image, backing, backing_fmt, options, *size):
    """qemu-img creates a qcow2 ``image`` over ``backing`` (its size unless ``size`` is given)."""
    overlay = ["-o", options, "-b", backing, "-F", backing_fmt, image, *size]
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", *overlay))


def qemu_raw(tools, image, out):
    tools.ok(tools.qemu_img("convert", "-O", "raw", image, out))
    return (tools.cwd / out).read_bytes()


@pytest.mark.parametrize(("compat", "cluster", "refcount_bits"), MATRIX)
def test_qemu_made_images_read_identical(tools, compat, cluster, refcount_bits):
    opts = options(compat, cluster, refcount_bits)
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, "a.qcow2", str(SIZE)))
    tools.ok(tools.qemu_io(*script(7, discards=compat == "1.1"), "a.qcow2"))
    ours = tools.img("convert", "-O", "raw", "a.qcow2", "ours.raw")
    assert (ours.rc, ours.err) == (0, "")
    assert (tools.cwd / "ours.raw").read_bytes() == qemu_raw(tools, "a.qcow2", "theirs.raw")


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_compressed_images_read_identical(tools, compression):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", str(SIZE)))
    tools.ok(tools.qemu_io(*script(11, discards=False), "a.qcow2"))
    tools.ok(
        tools.qemu_img(
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            f"compression_type={compression},cluster_size=4k",
            "a.qcow2",
            "c.qcow2",
        )
    )
    assert tools.ok(tools.img("convert", "-O", "raw", "c.qcow2", "ours.raw")) == ""
    assert (tools.cwd / "ours.raw").read_bytes() == qemu_raw(tools, "a.qcow2", "theirs.raw")
    assert tools.img("compare", "c.qcow2", "a.qcow2").out == "Images are identical.\n"


def test_qemu_made_backing_chain_reads_identical(tools):
    tools.ok(tools.qemu_img("create", "-q", "-f", "raw", "base.raw", str(SIZE)))
    tools.ok(tools.qemu_io("-f", "raw", *script(1, discards=False, zero_writes=False), "base.raw"))
    qemu_overlay(tools, "mid.qcow2", "base.raw", "raw", "cluster_size=4k")
    tools.ok(tools.qemu_io(*script(2), "mid.qcow2"))
    qemu_overlay(tools, "top.qcow2", "mid.qcow2", "qcow2", "compat=0.10", str(SIZE + (1 << 20)))
    tools.ok(tools.qemu_io(*script(3, size=SIZE + (1 << 20), discards=False), "top.qcow2"))
    assert tools.ok(tools.img("convert", "-O", "raw", "top.qcow2", "ours.raw")) == ""
    assert (tools.cwd / "ours.raw").read_bytes() == qemu_raw(tools, "top.qcow2", "theirs.raw")


@pytest.mark.parametrize(("compat", "cluster", "refcount_bits"), MATRIX)
def test_arctern_made_images_pass_qemu_check_and_compare(tools, compat, cluster, refcount_bits):
    opts = options(compat, cluster, refcount_bits)
    tools.ok(tools.img("create", "-q", "-f", "qcow2", "-o", opts, "ours.qcow2", str(SIZE)))
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, "theirs.qcow2", str(SIZE)))
    commands = script(5, discards=compat == "1.1")
    tools.ok(tools.io(*commands, "ours.qcow2"))
    tools.ok(tools.qemu_io(*commands, "theirs.qcow2"))
    check = tools.qemu_img("check", "ours.qcow2")
    assert check.rc == 0, check.out + check.err
    assert tools.qemu_img("compare", "ours.qcow2", "theirs.qcow2").out == "Images are identical.\n"


def test_arctern_written_content_is_what_was_written(tools):
    """Independent of QEMU's semantics: writes only, expected bytes built in Python."""
    expected = bytearray(SIZE)
    rng = random.Random(99)
    commands = []
    for _ in range(40):
        offset, length, pattern = (
            rng.randrange(SIZE - 200_000),
            rng.randrange(1, 200_000),
            rng.randrange(256),
        )
        expected[offset : offset + length] = bytes([pattern]) * length
        commands += ["-c", f"write -P {pattern} {offset} {length}"]
    tools.ok(
        tools.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "a.qcow2", str(SIZE))
    )
    tools.ok(tools.io(*commands, "a.qcow2"))
    assert tools.qemu_img("check", "a.qcow2").rc == 0
    assert qemu_raw(tools, "a.qcow2", "a.raw") == bytes(expected)


def test_arctern_made_backing_chain_passes_qemu_check_and_compare(tools):
    for tool_img, tool_io, suffix in (
        (tools.img, tools.io, "ours"),
        (tools.qemu_img, tools.qemu_io, "theirs"),
    ):
        base, top = f"base-{suffix}.qcow2", f"top-{suffix}.qcow2"
        tools.ok(tool_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", base, str(SIZE)))
        tools.ok(tool_io(*script(21), base))
        tools.ok(tool_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top))
        tools.ok(tool_io(*script(22), top))  # partial clusters: copy-on-write from the base
    for name in ("base-ours.qcow2", "top-ours.qcow2"):
        check = tools.qemu_img("check", name)
        assert check.rc == 0, check.out
    assert tools.qemu_img("compare", "top-ours.qcow2", "top-theirs.qcow2").rc == 0
    info = tools.ok(tools.qemu_img("info", "top-ours.qcow2"))
    assert "backing file: base-ours.qcow2\nbacking file format: qcow2\n" in info


@pytest.mark.parametrize(
    "target_options", ["cluster_size=512", "compat=0.10", "cluster_size=2M,refcount_bits=1"]
)
def test_arctern_convert_to_qcow2_passes_qemu_check(tools, target_options):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", str(SIZE)))
    tools.ok(tools.qemu_io(*script(31, discards=False), "src.qcow2"))
    tools.ok(tools.img("convert", "-O", "qcow2", "-o", target_options, "src.qcow2", "out.qcow2"))
    assert tools.qemu_img("check", "out.qcow2").rc == 0
    assert tools.qemu_img("compare", "src.qcow2", "out.qcow2").out == "Images are identical.\n"


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_arctern_compressed_convert_passes_qemu_check(tools, compression):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", str(SIZE)))
    tools.ok(tools.qemu_io(*script(41, discards=False), "src.qcow2"))
    opts = f"compression_type={compression}"
    for tool, out in ((tools.img, "ours.qcow2"), (tools.qemu_img, "theirs.qcow2")):
        tools.ok(tool("convert", "-c", "-O", "qcow2", "-o", opts, "src.qcow2", out))
    check = tools.qemu_img("check", "ours.qcow2")
    assert check.rc == 0 and "100.00% compressed clusters" in check.out, check.out
    assert tools.qemu_img("compare", "src.qcow2", "ours.qcow2").out == "Images are identical.\n"
    ours, theirs = (
        tools.ok(tools.qemu_img("map", "--output=json", name))
        for name in ("ours.qcow2", "theirs.qcow2")
    )
    assert ours == theirs
