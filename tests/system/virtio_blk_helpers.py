"""Shared by the virtio-blk system tests: the guest, its two-disk command line and a file
size limit that makes writes fail (their QMP helpers are tests/guests/qmp.py's).

The emulator process may not write past ``LIMIT`` bytes of any file
(RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with EFBIG instead of
killing the process); ``prlimit`` lifts the limit of the running process.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path

import pytest
from guests.build import BASE_ARGS, emulator_command

LIMIT = 1 << 20
SECTOR = 512
GUEST = [
    Path(__file__).parent / "virtio_blk_guest.c",
    Path(__file__).parent.parent / "guests" / "virtio_mmio.c",
]


@pytest.fixture(scope="module")
def virtio_blk_kernel(guest_elf) -> Path:
    """The virtio-blk guest (a fixture the system tests' conftest exposes)."""
    return guest_elf(GUEST)


def limit_file_size() -> None:
    """A ``preexec_fn``: the child (and what it execs) cannot write past LIMIT."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def two_disk_command(
    emulator: str, kernel: Path, workdir: Path, werror: str, append: str
) -> tuple[list[str], Path]:
    """The guest with a qcow2 disk and a raw disk (``werror`` on the raw one, the one the
    file size limit hits) on microvm,acpi=off, or on the default microvm for the guest's
    ``ioapic`` mode; returns the command and the raw image."""
    qcow2, raw = workdir / "disk0.qcow2", workdir / "disk1.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "4M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "2M"], check=True)
    command = emulator_command(emulator)
    if "ioapic" not in append.split():
        command[-1] += ",acpi=off"
    command += [
        *BASE_ARGS,
        "-kernel",
        str(kernel),
        "-drive",
        f"file={qcow2},format=qcow2,if=none,id=d0",
        "-device",
        "virtio-blk-device,drive=d0,serial=DISK-QCOW2",
        "-drive",
        f"file={raw},format=raw,if=none,id=d1",
        "-device",
        f"virtio-blk-device,drive=d1,serial=DISK-RAW,werror={werror}",
        "-append",
        append,
    ]
    return command, raw
