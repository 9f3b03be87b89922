"""Image locks: QEMU's lock bytes, so that qemu-io and Arctern refuse each other."""

from __future__ import annotations

import os

import pytest

from arctern.block import create_image, open_image
from arctern.errors import ImageLockError, UsageError

WRITE_LOCK = 'Failed to get "write" lock'


@pytest.fixture
def qemu_io(qemu_io_read):
    return lambda path, *args: qemu_io_read(path, "raw", *args)


def test_writer_holds_qemus_lock_bytes(image, registry, lock_bytes):
    with open_image(image, fmt="raw", registry=registry):
        assert lock_bytes(image) == [100, 101, 103, 201, 203]
    assert lock_bytes(image) == []


def test_reader_holds_qemus_lock_bytes(image, registry, lock_bytes):
    with open_image(image, fmt="raw", read_only=True, registry=registry):
        assert lock_bytes(image) == [100, 201, 203]
    with open_image(image, fmt="raw", read_only=True, force_share=True, registry=registry):
        assert lock_bytes(image) == [100]


def test_qemu_io_writer_refuses_our_open(image, registry, qemu_io_holding):
    with qemu_io_holding(image, "-f", "raw"):
        with pytest.raises(ImageLockError) as info:
            open_image(image, fmt="raw", registry=registry)
        assert '"write" lock' in str(info.value)
        assert f"Is another process using the image [{image}]?" in str(info.value)
        with pytest.raises(ImageLockError):
            open_image(image, fmt="raw", read_only=True, registry=registry)
        with open_image(image, fmt="raw", read_only=True, force_share=True, registry=registry) as b:
            assert b.pread(0, 4) == bytes(4)


def test_qemu_io_reader_lets_our_writer_open(image, registry, qemu_io_holding):
    with qemu_io_holding(image, "-f", "raw", "-r"):
        # qemu-io's reader of a raw image shares everything, write included.
        with open_image(image, fmt="raw", registry=registry) as writer:
            writer.pwrite(0, b"data")


def test_our_writer_refuses_qemu_io(image, registry, qemu_io):
    with open_image(image, fmt="raw", registry=registry):
        result = qemu_io(image)
        assert result.returncode == 1
        assert WRITE_LOCK in result.stderr
        assert f"Is another process using the image [{image}]?" in result.stderr
        # Like a QEMU guest device, a writer shares consistent reads: readers may open.
        assert qemu_io(image, "-r").returncode == 0


def test_our_reader_refuses_qemu_io_writer_only(image, registry, qemu_io):
    with open_image(image, fmt="raw", read_only=True, registry=registry):
        result = qemu_io(image)
        assert result.returncode == 1
        assert WRITE_LOCK in result.stderr
        assert qemu_io(image, "-r").returncode == 0


def test_force_share_reader_lets_qemu_io_write(image, registry, qemu_io):
    with open_image(image, fmt="raw", read_only=True, force_share=True, registry=registry):
        assert qemu_io(image).returncode == 0


def test_inactive_image_holds_no_lock(image, registry, lock_bytes, qemu_io):
    with open_image(image, fmt="raw", active=False, registry=registry) as backend:
        assert lock_bytes(image) == []
        assert qemu_io(image).returncode == 0
        backend.activate()
        assert lock_bytes(image) == [100, 101, 103, 201, 203]
        assert qemu_io(image).returncode == 1
        backend.inactivate()
        assert lock_bytes(image) == []
        assert qemu_io(image).returncode == 0


def test_two_opens_in_one_process_conflict(image, registry):
    with open_image(image, fmt="raw", registry=registry):
        with pytest.raises(ImageLockError, match=WRITE_LOCK):
            open_image(image, fmt="raw", registry=registry)


def test_activation_refused_by_a_lock_stays_inactive_and_can_be_retried(
    image, registry, qemu_io_holding, lock_bytes
):
    backend = open_image(image, fmt="raw", active=False, registry=registry)
    with qemu_io_holding(image, "-f", "raw"):
        with pytest.raises(ImageLockError):
            backend.activate()
        assert not backend.active
        assert not backend.node.file.active
        qemu_holds = lock_bytes(image)
    assert qemu_holds == [100, 101]  # ours were rolled back: only qemu-io's remain
    backend.activate()
    assert backend.active
    backend.pwrite(0, b"after retry")
    backend.close()


def test_create_refuses_an_image_in_use(image, registry, qemu_io_holding):
    with qemu_io_holding(image, "-f", "raw"):
        with pytest.raises(ImageLockError):
            create_image(image, "raw", 4096, registry=registry)
    assert os.path.getsize(image) == 1 << 20  # refused before truncating anything


def test_locking_off_takes_no_lock(image, registry, lock_bytes):
    with open_image(image, fmt="raw", options={"file.locking": "off"}, registry=registry):
        assert lock_bytes(image) == []


def test_bad_locking_option(image, registry):
    with pytest.raises(UsageError, match="locking"):
        open_image(image, fmt="raw", options={"file.locking": "maybe"}, registry=registry)


def test_force_share_needs_read_only(image, registry):
    with pytest.raises(UsageError, match="force-share=on can only be used with read-only"):
        open_image(image, fmt="raw", force_share=True, registry=registry)
