"""block_status through ``arctern-img map --output=json`` equals ``qemu-img map``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ARCTERN_IMG = str(Path(sys.executable).with_name("arctern-img"))


def _assert_same_map(tools, path: str) -> None:
    theirs = tools.qemu_img("map", "--output=json", path).stdout
    ours = subprocess.run(
        [ARCTERN_IMG, "map", "--output=json", path], capture_output=True, text=True, timeout=60
    )
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs


@pytest.mark.parametrize("mode", ["off", "metadata", "falloc", "full"])
def test_map_of_preallocated_image(tools, mode):
    path = tools.path("prealloc.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", f"preallocation={mode}", path, "3M")
    tools.qemu_io(path, "write -P 0x11 100000 70000")
    _assert_same_map(tools, path)


def test_map_of_zero_compressed_and_backed_clusters(tools):
    base = tools.path("base.qcow2")
    tools.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", base, "2M")
    tools.qemu_io(base, "write -P 1 0 1M", "write -c 1M 64k")
    top = tools.path("top.qcow2")
    tools.qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        top,
        "3M",
    )
    tools.qemu_io(
        top,
        "write -P 2 4096 8192",
        "write -z 65536 65536",
        "write -z -u 0 4096",
        "write -c 2M 4096",
        "discard 8192 4096",
        "write -P 3 2100000 300000",
    )
    _assert_same_map(tools, top)
    _assert_same_map(tools, base)
