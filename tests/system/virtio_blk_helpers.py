"""Shared by the virtio-blk system tests: the guest, its two-disk command line, a file
size limit that makes writes fail, and QMP helpers.

The emulator process may not write past ``LIMIT`` bytes of any file
(RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with EFBIG instead of
killing the process); ``prlimit`` lifts the limit of the running process.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from guests.build import BASE_ARGS, emulator_command
from qemu.qmp import ConnectError, QMPClient

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


async def connect_qmp(sock: Path, name: str = "virtio-blk-test") -> QMPClient:
    """Connect, retrying: the socket file appears before the emulator listens on it."""
    qmp = QMPClient(name)
    # generous: the emulator starts in well under a second, but CI shares two cores
    deadline = time.monotonic() + 60
    while True:
        try:
            await qmp.connect(str(sock))
            return qmp
        except (ConnectError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.025)


async def wait_status(qmp: QMPClient, *, leaving: str) -> str:
    """Poll query-status until the run state is no longer ``leaving``; return it."""
    status = leaving
    for _ in range(1200):
        status = (await qmp.execute("query-status"))["status"]
        if status != leaving:
            break
        await asyncio.sleep(0.025)
    return status
