"""qcow2 images and QEMU: the same lock bytes, mutual refusal, and a hand-over from qemu-io."""

from __future__ import annotations

import subprocess

import pytest

from arctern.block import open_image
from arctern.config import BuildConfig
from arctern.errors import ImageLockError
from arctern.plugins import Registry


@pytest.fixture(scope="module")
def qcow2_registry():
    config = BuildConfig(enable={"block": {"raw", "qcow2"}})
    return Registry(config, strict=True).discover(["block"])


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "1M"], check=True)
    return path


@pytest.mark.parametrize(
    "qemu_args, ours",
    [
        ((), {}),
        (("-r",), {"read_only": True}),
        (("-r", "-U"), {"read_only": True, "force_share": True}),
    ],
)
def test_same_lock_bytes_as_qemu_io(
    image, qcow2_registry, qemu_io_holding, lock_bytes, qemu_args, ours
):
    with qemu_io_holding(image, "-f", "qcow2", *qemu_args):
        theirs = lock_bytes(image)
    with open_image(image, fmt="qcow2", registry=qcow2_registry, **ours):
        assert lock_bytes(image) == theirs


def test_qemu_io_writer_refuses_our_writer(image, qcow2_registry, qemu_io_holding):
    with qemu_io_holding(image, "-f", "qcow2"):
        with pytest.raises(ImageLockError) as info:
            open_image(image, fmt="qcow2", registry=qcow2_registry)
    assert str(info.value) == (
        f'Failed to get "write" lock. Is another process using the image [{image}]?'
    )


def test_our_writer_refuses_qemu_io_writer(image, qcow2_registry, qemu_io_read):
    with open_image(image, fmt="qcow2", registry=qcow2_registry):
        result = qemu_io_read(image, "qcow2")
    assert result.returncode == 1
    assert result.stderr == (
        f'qemu-io: can\'t open device {image}: Failed to get "write" lock\n'
        f"Is another process using the image [{image}]?\n"
    )


def test_hand_over_from_qemu_io_to_an_inactive_image(image, qcow2_registry, tmp_path):
    """The migration hand-over with QEMU as the source: what qemu-io allocated and
    wrote while we were inactive (our qcow2 caches full of stale tables) is what
    we read once activated."""
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 64k", image], check=True, capture_output=True
    )
    ours = open_image(image, fmt="qcow2", active=False, registry=qcow2_registry)
    assert ours.pread(0, 65536) == b"\x01" * 65536  # caches now hold the old L1/L2/refcounts
    subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", image, "2M"], check=True)
    commands = ["write -P 2 512k 128k", "write -P 3 1536k 4k", "write -z 0 4k"]
    subprocess.run(
        ["qemu-io", "-f", "qcow2", *(a for c in commands for a in ("-c", c)), image],
        check=True,
        capture_output=True,
    )
    expected = str(tmp_path / "expected.raw")  # made while we hold no lock
    subprocess.run(["qemu-img", "convert", "-O", "raw", image, expected], check=True)
    ours.activate()
    with open(expected, "rb") as f:
        assert ours.pread(0, ours.length) == f.read()
    ours.pwrite(1 << 20, b"ours")
    ours.close()
    check = subprocess.run(["qemu-img", "check", image], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
