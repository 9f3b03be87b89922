"""block_status through ``arctern-img map --output=json`` equals ``qemu-img map``."""

from __future__ import annotations

import pytest

from arctern.cli import img


def _assert_same_map(tools, path: str, capsys) -> None:
    theirs = tools.qemu_img("map", "--output=json", path).stdout
    capsys.readouterr()
    assert img.main(["map", "--output=json", path]) == 0
    assert capsys.readouterr().out == theirs


@pytest.mark.parametrize("mode", ["off", "metadata", "falloc", "full"])
def test_map_of_preallocated_image(tools, mode, capsys):
    path = tools.path("prealloc.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", f"preallocation={mode}", path, "3M")
    tools.qemu_io(path, "write -P 0x11 100000 70000")
    _assert_same_map(tools, path, capsys)


def test_map_of_zero_compressed_and_backed_clusters(tools, capsys):
    base = tools.path("base.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", base, "2M")
    tools.qemu_io(base, "write -P 1 0 1M", "write -c 1M 64k")
    top = tools.path("top.qcow2")
    tools.qemu_create(top, "3M", "cluster_size=4096", backing="base.qcow2")
    tools.qemu_io(
        top,
        "write -P 2 4096 8192",
        "write -z 65536 65536",
        "write -z -u 0 4096",
        "write -c 2M 4096",
        "discard 8192 4096",
        "write -P 3 2100000 300000",
        "write -P 4 1M 128k",
        "write -z 1M 64k",  # allocated, then zeroed in place: a preallocated zero cluster
    )
    _assert_same_map(tools, top, capsys)
    _assert_same_map(tools, base, capsys)
