"""qcow2 images: Arctern holds the lock bytes qemu-io holds, and they refuse each other."""

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
