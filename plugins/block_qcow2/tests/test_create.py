"""create(): byte-identical to qemu-img create, and qemu-img's option checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arctern.block import create_image, open_image
from arctern.errors import UsageError

MiB = 1 << 20

CASES = [
    ("defaults-1G", 1 << 30, {}),
    ("compat-0.10", MiB, {"compat": "0.10"}),
    ("v2-alias", 5 * MiB, {"compat": "v2", "cluster_size": 4096}),
    ("512-clusters-1bit", 64 * MiB, {"cluster_size": 512, "refcount_bits": 1}),
    ("2M-clusters-64bit", 3 << 30, {"cluster_size": 2 * MiB, "refcount_bits": 64}),
    ("lazy", 10 * MiB, {"lazy_refcounts": "on"}),
    ("zstd", 10 * MiB, {"compression_type": "zstd"}),
    ("prealloc-metadata", 3 * MiB + 512, {"preallocation": "metadata", "cluster_size": 4096}),
    ("odd-size", 1000, {}),
    ("empty", 0, {}),
]


def _qemu_opts(options: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("name,size,options", CASES, ids=[c[0] for c in CASES])
def test_create_is_byte_identical_to_qemu_img(tools, name, size, options):
    ours, theirs = tools.path("ours.qcow2"), tools.path("theirs.qcow2")
    create_image(ours, "qcow2", size, options)
    args = ["create", "-q", "-f", "qcow2"]
    if options:
        args += ["-o", _qemu_opts(options)]
    tools.qemu_img(*args, theirs, str(size))
    assert Path(ours).read_bytes() == Path(theirs).read_bytes()


def test_create_large_l1_over_several_refcount_blocks(tools):
    """512-byte clusters, 2 GiB: the L1 table (1024 clusters) needs new refcount blocks."""
    ours, theirs = tools.path("ours.qcow2"), tools.path("theirs.qcow2")
    create_image(ours, "qcow2", 2 << 30, {"cluster_size": 512})
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", theirs, "2G")
    ours_bytes, theirs_bytes = Path(ours).read_bytes(), Path(theirs).read_bytes()
    assert ours_bytes[:0x70] == theirs_bytes[:0x70]  # same header: L1 at cluster 3
    assert len(ours_bytes) == len(theirs_bytes)
    tools.assert_qemu_check_clean(ours)


def test_create_with_backing_file_is_byte_identical(tools):
    base = tools.path("base.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", base, "7M")
    ours, theirs = tools.path("ours.qcow2"), tools.path("theirs.qcow2")
    create_image(ours, "qcow2", 7 * MiB, {"backing_file": "base.qcow2", "backing_fmt": "qcow2"})
    tools.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", theirs, "7M")
    assert Path(ours).read_bytes() == Path(theirs).read_bytes()
    with open_image(ours, fmt="qcow2", read_only=True) as image:
        assert image.node.driver.backing_filename == "base.qcow2"
        assert image.node.driver.backing_format == "qcow2"


@pytest.mark.parametrize(
    "options,message",
    [
        ({"backing_file": "x.qcow2"}, "Backing file specified without backing format"),
        ({"extended_l2": "on"}, "extended_l2"),
        ({"compat": "0.10", "refcount_bits": 8}, "compatibility level 1.1"),
        ({"compat": "0.10", "lazy_refcounts": "on"}, "Lazy refcounts"),
        ({"compat": "0.10", "compression_type": "zstd"}, "compatibility level 1.1"),
        ({"cluster_size": 1000}, "Cluster size"),
        ({"cluster_size": 4 * MiB}, "Cluster size"),
        ({"refcount_bits": 3}, "Refcount width"),
        ({"compat": "2.0"}, "compatibility level"),
        ({"preallocation": "lots"}, "preallocation"),
        ({"compression_type": "lzo"}, "compression type"),
    ],
)
def test_bad_create_options_are_refused(tools, options, message):
    with pytest.raises(UsageError, match=message):
        create_image(tools.path("bad.qcow2"), "qcow2", MiB, options)


def test_info_matches_qemu_img(tools):
    for options in (
        {},
        {"compat": "0.10"},
        {"lazy_refcounts": "on", "refcount_bits": 1},
        {"compression_type": "zstd"},
    ):
        path = tools.path("info.qcow2")
        create_image(path, "qcow2", MiB, options)
        theirs = json.loads(tools.qemu_img("info", "--output=json", path).stdout)
        with open_image(path, fmt="qcow2", read_only=True) as image:
            info = image.node.driver.info()
        assert info.format_specific == theirs["format-specific"]
        assert info.cluster_size == theirs["cluster-size"]
        assert info.dirty == theirs["dirty-flag"]
