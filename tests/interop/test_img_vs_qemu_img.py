"""arctern-img prints what qemu-img 7.2 prints, on the same images, byte for byte."""

from __future__ import annotations

import random
import shutil
import struct

import pytest

QCOW2_OPTIONS = [
    "",
    "compat=0.10",
    "cluster_size=512",
    "cluster_size=4k,refcount_bits=1",
    "cluster_size=2M,refcount_bits=64",
    "lazy_refcounts=on",
    "compression_type=zstd",
]


def qemu_image(tools, name, options="", size="4M", writes=()):
    args = ["create", "-q", "-f", "qcow2"] + (["-o", options] if options else [])
    tools.ok(tools.qemu_img(*args, name, size))
    if writes:
        cmds = [arg for w in writes for arg in ("-c", w)]
        tools.ok(tools.qemu_io(*cmds, name))
    return name


DATA_WRITES = ("write -P 1 0 64k", "write -P 2 1M 100k", "write -z 2M 64k", "write -P 3 3M 512")


def assert_same(tools, *args):
    ours, theirs = tools.img(*args), tools.qemu_img(*args)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out), args


@pytest.mark.parametrize("options", QCOW2_OPTIONS)
def test_info_and_map_match(tools, options):
    qemu_image(tools, "a.qcow2", options, writes=DATA_WRITES)
    for args in (["info"], ["info", "--output=json"], ["map"], ["map", "--output=json"]):
        assert_same(tools, *args, "a.qcow2")
    ours, theirs = tools.img("check", "a.qcow2"), tools.qemu_img("check", "a.qcow2")
    assert ours.rc == theirs.rc == 0
    assert ours.out == theirs.out


@pytest.mark.parametrize("cluster_size", ["512", "1k", "4k"])
def test_check_fragmentation_of_scattered_writes_matches(tools, cluster_size):
    """Out-of-order allocation with small clusters: every figure of the summary matches."""
    rng = random.Random(5)
    writes = []
    for i in range(120):
        offset = rng.randrange(0, 4 << 20, 512)
        length = min(rng.choice([512, 1536, 4096, 65536]), (4 << 20) - offset)
        writes.append(
            f"write -z {offset} {length}" if i % 7 == 0 else f"write -P 1 {offset} {length}"
        )
    qemu_image(tools, "a.qcow2", f"cluster_size={cluster_size}", writes=writes)
    tools.ok(tools.qemu_img("convert", "-c", "-O", "qcow2", "a.qcow2", "c.qcow2"))
    for image in ("a.qcow2", "c.qcow2"):
        for args in (["check"], ["check", "--output=json"]):
            assert_same(tools, *args, image)


def test_info_and_map_of_a_backing_chain_match(tools):
    tools.ok(tools.qemu_img("create", "-q", "-f", "raw", "base.raw", "4M"))
    tools.ok(tools.qemu_io("-f", "raw", "-c", "write -P 9 0 1M", "base.raw"))
    tools.ok(
        tools.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2")
    )
    tools.ok(tools.qemu_io("-c", "write -P 8 512k 128k", "-c", "write -z 2M 64k", "mid.qcow2"))
    tools.ok(
        tools.qemu_img(
            "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", "6M"
        )
    )
    tools.ok(tools.qemu_io("-c", "write -P 7 64k 4k", "-c", "write -P 6 5M 64k", "top.qcow2"))
    for args in (
        ["info"],
        ["info", "--backing-chain"],
        ["info", "--backing-chain", "--output=json"],
        ["map"],
        ["map", "--output=json"],
    ):
        assert_same(tools, *args, "top.qcow2")
    assert_same(tools, "map", "--output=json", "--start-offset=1M", "--max-length=2M", "top.qcow2")


def test_map_of_compressed_image_matches(tools):
    qemu_image(tools, "a.qcow2", writes=DATA_WRITES)
    tools.ok(tools.qemu_img("convert", "-c", "-O", "qcow2", "a.qcow2", "c.qcow2"))
    assert_same(tools, "map", "--output=json", "c.qcow2")
    ours, theirs = tools.img("map", "c.qcow2"), tools.qemu_img("map", "c.qcow2")
    assert ours.rc == theirs.rc == 1
    assert ours.err == theirs.err.replace("qemu-img:", "arctern-img:")


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "qcow2"],
        ["-f", "qcow2", "-o", "cluster_size=4k,refcount_bits=64,lazy_refcounts=on"],
        ["-f", "qcow2", "-o", "compat=0.10"],
        ["-f", "qcow2", "-o", "compression_type=zstd,preallocation=metadata"],
        ["-f", "raw"],
        ["-f", "raw", "-o", "preallocation=falloc"],
    ],
)
def test_create_matches(tools, args):
    (tools.cwd / "q").mkdir()
    ours = tools.img("create", *args, "x.img", "1.5M")
    theirs = tools.qemu_img("create", *args, "q/x.img", "1.5M")
    assert ours.rc == theirs.rc == 0
    assert ours.out == theirs.out.replace("q/x.img", "x.img")
    assert_info_equal(tools, "x.img", "q/x.img")
    if "qcow2" in args:
        assert tools.qemu_img("check", "x.img").rc == 0


def assert_info_equal(tools, ours, theirs):
    import json

    a = json.loads(tools.ok(tools.qemu_img("info", "--output=json", ours)))
    b = json.loads(tools.ok(tools.qemu_img("info", "--output=json", theirs)))
    for info in (a, b):
        info.pop("filename"), info.pop("actual-size")
    assert a == b


def test_create_with_backing_file_matches(tools):
    qemu_image(tools, "base.qcow2", size="3M")
    ours = tools.img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "o.qcow2")
    theirs = tools.qemu_img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "q.qcow2")
    assert ours.out == theirs.out.replace("q.qcow2", "o.qcow2")
    assert_info_equal(tools, "o.qcow2", "q.qcow2")
    missing = tools.img("create", "-f", "qcow2", "-b", "base.qcow2", "o2.qcow2")
    assert missing.rc == 1
    assert missing.err == "arctern-img: o2.qcow2: Backing file specified without backing format\n"


def _refcount_image(tools, name, cluster, value):
    """A fresh qcow2 whose refblock entry for ``cluster`` is set to ``value``."""
    qemu_image(tools, name, size="4M")
    with open(tools.cwd / name, "r+b") as f:
        f.seek(0x20000 + 2 * cluster)
        f.write(struct.pack(">H", value))


@pytest.mark.parametrize(("cluster", "value", "rc"), [(2, 2, 3), (3, 0, 2)])
def test_check_of_leaks_and_corruptions_matches(tools, cluster, value, rc):
    _refcount_image(tools, "bad.qcow2", cluster, value)
    for args in (["check"], ["check", "--output=json"]):
        ours, theirs = tools.img(*args, "bad.qcow2"), tools.qemu_img(*args, "bad.qcow2")
        assert ours.rc == theirs.rc == rc
        assert ours.out == theirs.out


def test_check_repair_leaks_matches_and_leaves_a_clean_image(tools):
    _refcount_image(tools, "a.qcow2", 2, 2)
    shutil.copy(tools.cwd / "a.qcow2", tools.cwd / "q.qcow2")
    ours = tools.img("check", "-r", "leaks", "a.qcow2")
    theirs = tools.qemu_img("check", "-r", "leaks", "q.qcow2")
    assert ours.rc == theirs.rc == 0
    assert ours.out == theirs.out
    assert tools.qemu_img("check", "a.qcow2").rc == 0


def test_check_repair_all_fixes_corruption(tools):
    _refcount_image(tools, "a.qcow2", 3, 0)
    ours = tools.img("check", "-r", "all", "a.qcow2")
    assert ours.rc == 0
    assert ours.out.startswith(
        "The following inconsistencies were found and repaired:\n\n"
        "    0 leaked clusters\n    1 corruptions\n\n"
        "Double checking the fixed image now...\n"
        "No errors were found on the image.\n"
    )
    assert tools.qemu_img("check", "a.qcow2").rc == 0


def test_compare_matches(tools):
    qemu_image(tools, "a.qcow2", writes=DATA_WRITES)
    tools.ok(tools.qemu_img("convert", "-O", "raw", "a.qcow2", "a.raw"))
    qemu_image(tools, "b.qcow2", writes=DATA_WRITES + ("write -P 4 1500k 1",))
    tools.ok(tools.qemu_img("create", "-q", "-f", "raw", "big.raw", "8M"))
    for pair in (
        ["a.qcow2", "a.raw"],
        ["a.qcow2", "b.qcow2"],
        ["b.qcow2", "a.qcow2"],
        ["a.raw", "big.raw"],
        ["-s", "a.raw", "big.raw"],
        ["a.qcow2", "big.raw"],
    ):
        assert_same(tools, "compare", *pair)
    ours, theirs = (
        tools.img("compare", "a.qcow2", "nope"),
        tools.qemu_img("compare", "a.qcow2", "nope"),
    )
    assert ours.rc == theirs.rc == 2


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "100"],
        ["-c", "100", "-s", "64k", "-d", "1", "-t", "none"],
        ["-w", "-c", "50", "-o", "1M", "-S", "8k", "--pattern=3", "-d", "1"],
        ["-w", "-c", "40", "-d", "2", "--flush-interval=8", "--no-drain"],
    ],
)
def test_bench_prints_what_qemu_img_prints(tools, normalize, args):
    qemu_image(tools, "a.qcow2", size="16M")
    shutil.copy(tools.cwd / "a.qcow2", tools.cwd / "q.qcow2")
    ours, theirs = tools.img("bench", *args, "a.qcow2"), tools.qemu_img("bench", *args, "q.qcow2")
    assert ours.rc == theirs.rc == 0
    assert normalize(ours.out) == normalize(theirs.out)
    assert tools.qemu_img("compare", "a.qcow2", "q.qcow2").rc == 0


def test_resize_of_qcow2_matches(tools):
    qemu_image(tools, "a.qcow2", writes=DATA_WRITES)
    shutil.copy(tools.cwd / "a.qcow2", tools.cwd / "q.qcow2")
    ours, theirs = tools.img("resize", "a.qcow2", "+3M"), tools.qemu_img("resize", "q.qcow2", "+3M")
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out) == (0, "Image resized.\n")
    assert tools.qemu_img("check", "a.qcow2").rc == 0
    assert tools.qemu_img("compare", "-s", "a.qcow2", "q.qcow2").out == "Images are identical.\n"


def test_shrink_is_refused_without_the_option_with_qemu_img_s_two_lines(tools):
    qemu_image(tools, "a.qcow2", writes=DATA_WRITES)
    ours, theirs = tools.img("resize", "a.qcow2", "-1M"), tools.qemu_img("resize", "a.qcow2", "-1M")
    assert ours.rc == theirs.rc == 1
    assert ours.err.replace("arctern-img:", "qemu-img:") == theirs.err
    assert len(theirs.err.splitlines()) == 2  # the refusal, then the warning


def test_shrink_of_an_image_with_snapshots_matches(tools):
    """qemu-img 7.2 shrinks an image with internal snapshots; they keep what they reference."""
    writes = ("write -P 1 0 1M", "write -P 2 5M 1M", "write -P 3 7M 64k")
    for name in ("a.qcow2", "q.qcow2"):
        tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", name, "8M"))
        tools.ok(tools.qemu_io(*[a for w in writes for a in ("-c", w)], name))
        tools.ok(tools.qemu_img("snapshot", "-c", "before", name))
        tools.ok(tools.qemu_io("-c", "write -P 4 512k 1M", name))
    tools.ok(tools.qemu_img("convert", "-O", "raw", "a.qcow2", "before-shrink.raw"))
    ours = tools.img("resize", "--shrink", "a.qcow2", "3M")
    theirs = tools.qemu_img("resize", "--shrink", "q.qcow2", "3M")
    assert (ours.rc, ours.out, ours.err) == (theirs.rc, theirs.out, theirs.err)
    assert ours.out == "Image resized.\n"
    for name in ("a.qcow2", "q.qcow2"):
        assert tools.qemu_img("check", name).rc == 0
    assert tools.qemu_img("compare", "-s", "a.qcow2", "q.qcow2").out == "Images are identical.\n"
    # Applying the snapshot brings back its 8 MiB and its data, as with qemu-img's image.
    for name in ("a.qcow2", "q.qcow2"):
        tools.ok(tools.qemu_img("snapshot", "-a", "before", name))
        assert tools.qemu_img("check", name).rc == 0
    tools.ok(tools.qemu_io("-c", "read -P 1 0 1M", "-c", "read -P 2 5M 1M", "a.qcow2"))
    assert tools.qemu_img("compare", "-s", "a.qcow2", "q.qcow2").out == "Images are identical.\n"


def test_info_with_snapshots_matches(tools):
    qemu_image(tools, "s.qcow2", writes=("write -P 1 0 64k",))
    tools.ok(tools.qemu_img("snapshot", "-c", "first", "s.qcow2"))
    tools.ok(tools.qemu_io("-c", "write -P 2 0 64k", "s.qcow2"))
    tools.ok(tools.qemu_img("snapshot", "-c", "a longer snapshot name", "s.qcow2"))
    for args in (["info"], ["info", "--output=json"], ["check"], ["map", "--output=json"]):
        assert_same(tools, *args, "s.qcow2")


def test_info_with_bitmaps_and_snapshots_matches(tools):
    qemu_image(tools, "b.qcow2", writes=("write -P 1 0 64k",))
    tools.ok(tools.qemu_img("snapshot", "-c", "snap1", "b.qcow2"))
    tools.ok(tools.qemu_img("bitmap", "--add", "b.qcow2", "auto-bitmap"))
    tools.ok(tools.qemu_img("bitmap", "--add", "-g", "128k", "--disable", "b.qcow2", "off"))
    for args in (["info"], ["info", "--output=json"], ["check"]):
        assert_same(tools, *args, "b.qcow2")
    assert "                [0]: auto\n" in tools.img("info", "b.qcow2").out


def test_convert_compressed_of_scattered_4k_data_compresses_every_cluster(tools):
    """Data every 96 KiB, 4 KiB long, in a sparse raw file: qemu-img convert -c stores each
    64 KiB cluster holding some of it compressed; so must we (no partial clusters)."""
    with open(tools.cwd / "sparse.raw", "wb") as f:
        f.truncate(4 << 20)
        for offset in range(0, 4 << 20, 96 << 10):
            f.seek(offset + 4096)
            f.write(bytes(range(256)) * 16)
    tools.ok(tools.qemu_img("convert", "-c", "-O", "qcow2", "sparse.raw", "theirs.qcow2"))
    tools.ok(tools.img("convert", "-c", "-O", "qcow2", "sparse.raw", "ours.qcow2"))
    ours = tools.qemu_img("check", "--output=json", "ours.qcow2")
    theirs = tools.qemu_img("check", "--output=json", "theirs.qcow2")
    assert ours.out.replace("ours", "theirs") == theirs.out
    assert '"compressed-clusters": 43' in ours.out
    tools.ok(tools.qemu_img("compare", "ours.qcow2", "sparse.raw"))


def test_strict_compare_of_allocation_matches(tools):
    qemu_image(tools, "z.qcow2", writes=("write -z 1M 64k",))
    qemu_image(tools, "d.qcow2", writes=("write -P 0 2M 64k",))
    for pair in (["z.qcow2", "d.qcow2"], ["d.qcow2", "z.qcow2"]):
        assert_same(tools, "compare", "-s", *pair)
        assert_same(tools, "compare", *pair)


def test_open_and_create_errors_match(tools):
    """qemu-img's prefix on the file protocol's own message, qemu-io's without it."""
    (tools.cwd / "folder").mkdir()
    cases = [
        ("img", ["info", "missing.qcow2"]),
        ("img", ["info", "folder"]),
        ("img", ["check", "folder"]),
        ("img", ["create", "-q", "-f", "qcow2", "folder", "1M"]),
        ("img", ["create", "-q", "-f", "qcow2", "no/such/dir.qcow2", "1M"]),
        ("io", ["-c", "read 0 512", "missing.qcow2"]),
        ("io", ["-c", "read 0 512", "folder"]),
        ("io", ["-r", "-c", "read 0 512", "folder"]),
    ]
    for tool, args in cases:
        ours = (tools.img if tool == "img" else tools.io)(*args)
        theirs = (tools.qemu_img if tool == "img" else tools.qemu_io)(*args)
        assert ours.rc == theirs.rc == 1, args
        assert ours.err.replace("arctern-", "qemu-") == theirs.err, args


def test_probed_raw_warning_matches(tools):
    """QEMU warns when a probed raw image is opened for writing, and only then."""
    tools.ok(tools.qemu_img("create", "-q", "-f", "raw", "p.raw", "1M"))
    for tool, args in (
        ("io", ["-c", "write 0 512", "p.raw"]),
        ("io", ["-r", "-c", "read 0 512", "p.raw"]),
        ("img", ["bench", "-w", "-c", "1", "-q", "p.raw"]),
        ("img", ["info", "p.raw"]),
    ):
        ours = (tools.img if tool == "img" else tools.io)(*args)
        theirs = (tools.qemu_img if tool == "img" else tools.qemu_io)(*args)
        assert ours.rc == theirs.rc == 0, args
        assert ours.err == theirs.err, args
        assert ("WARNING: Image format was not specified" in ours.err) == (
            "-r" not in args and "info" not in args
        )
