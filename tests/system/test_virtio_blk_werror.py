"""virtio-blk I/O error policies end to end, under QEMU and under arctern-system.

The raw disk's process may not write past 1 MiB (RLIMIT_FSIZE, with SIGXFSZ
ignored): the guest's write to the last sector of the 2 MiB disk fails with
EFBIG. With ``werror=stop`` the machine stops in run state ``io-error`` and
keeps the request in flight; once the limit is lifted (prlimit) ``cont``
replays it and the guest finishes as if nothing had happened. With the
default ``werror=enospc`` (EFBIG is not ENOSPC) the guest gets IOERR.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from guests.qmp import connect_qmp, qmp_option, wait_status
from virtio_blk_helpers import LIMIT, SECTOR, limit_file_size, two_disk_command


def start(emulator: str, kernel: Path, workdir: Path, werror: str, mode: str):
    command, raw = two_disk_command(emulator, kernel, workdir, werror, mode)
    sock = workdir / "qmp.sock"
    process = subprocess.Popen(
        [*command, *qmp_option(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit_file_size,
    )
    return process, sock, raw


async def stop_then_cont(process: subprocess.Popen, sock: Path) -> str:
    """Wait for the machine to stop, lift the file size limit, continue; the stop status."""
    qmp = await connect_qmp(sock)
    try:
        status = await wait_status(qmp, leaving="running")
        subprocess.run(["prlimit", "--pid", str(process.pid), "--fsize=unlimited"], check=True)
        await qmp.execute("cont")
    finally:
        await qmp.disconnect()
    return status


@pytest.mark.parametrize("mode", ["poll", "irq"])
def test_werror_stop_pauses_and_cont_replays_the_request(virtio_blk_kernel, tmp_path, mode):
    results = {}
    for emulator in ("qemu", "arctern"):
        workdir = tmp_path / emulator
        workdir.mkdir()
        process, sock, raw = start(emulator, virtio_blk_kernel, workdir, "stop", mode)
        try:
            status = asyncio.run(stop_then_cont(process, sock))
            output, _err = process.communicate(timeout=120)
        finally:
            process.kill()
            process.wait()
        assert status == "io-error", (emulator, status)
        assert process.returncode == 1, (emulator, output)
        assert output.decode().endswith("done\n"), (emulator, output)
        # The replayed request reached the disk (a raw image: the file is the disk).
        last_sector = raw.read_bytes()[2 * LIMIT - SECTOR :]
        assert last_sector.startswith(b"written by the guest\x001"), (emulator, last_sector)
        results[emulator] = output.decode().splitlines()
    assert results["arctern"] == results["qemu"]


def test_default_werror_reports_efbig_as_an_io_error(virtio_blk_kernel, tmp_path):
    results = {}
    for emulator in ("qemu", "arctern"):
        workdir = tmp_path / emulator
        workdir.mkdir()
        process, _sock, _raw = start(emulator, virtio_blk_kernel, workdir, "enospc", "poll")
        output, _err = process.communicate(timeout=120)
        results[emulator] = (output.decode().splitlines(), process.returncode)
    lines, status = results["qemu"]
    assert status == 3 and lines[-1] == "disk1: FAIL write last sector", lines
    assert results["arctern"] == results["qemu"]
