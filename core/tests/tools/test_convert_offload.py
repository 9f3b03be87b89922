"""arctern-img convert -C: data copied by copy offload (copy_file_range), same image as without.

The results are checked with the real qemu-img (compare, check).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

MiB = 1 << 20


def qemu(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which(args[0]), f"{args[0]} is required (Debian package qemu-utils)"
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.fixture
def source(tmp_path):
    """A 4 MiB image per format with data (some of it in partial clusters), a zero
    cluster and holes; returns its file name for a format."""

    def make(fmt: str) -> str:
        name = str(tmp_path / f"src.{fmt}")
        assert qemu("qemu-img", "create", "-q", "-f", fmt, name, "4M").returncode == 0
        writes = ["write -P 1 0 1M", "write -P 2 1600k 3k", "write -P 3 3M 600k"]
        writes += ["write -z 256k 64k"]
        args = [arg for w in writes for arg in ("-c", w)]
        assert qemu("qemu-io", "-f", fmt, *args, name).returncode == 0
        return name

    return make


@pytest.fixture
def offloaded(monkeypatch):
    """Bytes os.copy_file_range copied, counted."""
    copied = [0]
    real = os.copy_file_range

    def counting(*args, **kwargs):
        n = real(*args, **kwargs)
        copied[0] += n
        return n

    monkeypatch.setattr(os, "copy_file_range", counting)
    return copied


@pytest.mark.parametrize("src_fmt", ["raw", "qcow2"])
@pytest.mark.parametrize("dst_fmt", ["raw", "qcow2"])
def test_convert_with_copy_offload(arctern_img, source, offloaded, src_fmt, dst_fmt):
    src = source(src_fmt)
    r = arctern_img("convert", "-C", "-f", src_fmt, "-O", dst_fmt, src, "dst")
    assert (r.rc, r.err) == (0, "")
    assert qemu("qemu-img", "compare", "-f", src_fmt, "-F", dst_fmt, src, "dst").returncode == 0
    if dst_fmt == "qcow2":
        assert qemu("qemu-img", "check", "dst").returncode == 0
    # The data of whole clusters went file to file in the kernel, not through Python.
    assert offloaded[0] >= 1 * MiB + 512 * 1024


def test_convert_offload_falls_back_where_the_kernel_cannot(
    arctern_img, source, monkeypatch, tmp_path
):
    def cross_device(*args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    src = source("qcow2")
    assert arctern_img("convert", "-C", "-O", "qcow2", src, "dst").rc == 0
    assert qemu("qemu-img", "compare", src, "dst").returncode == 0
    assert qemu("qemu-img", "check", "dst").returncode == 0


@pytest.mark.parametrize(
    ("option", "message"),
    [("-c", "Cannot enable copy offloading when -c is used"), ("-S0", "when -S is used")],
)
def test_convert_offload_refuses_what_qemu_img_refuses(arctern_img, source, option, message):
    r = arctern_img("convert", "-C", option, "-O", "qcow2", source("raw"), "dst")
    assert r.rc == 1 and message in r.err
