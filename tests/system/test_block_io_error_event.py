"""QMP's BLOCK_IO_ERROR event when virtio-blk hits an I/O error, under QEMU and arctern-system.

The guest's write past the 1 MiB file size limit fails with EFBIG (see
virtio_blk_helpers). Both emulators start with ``-S`` so the QMP client is
listening before the guest runs; each werror policy must give the event
QEMU gives (its ``node-name`` aside: Arctern's block layer names no nodes)
and, for ``stop``, before the STOP event, with query-block's ``io-status``
"failed" until ``cont``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

import pytest
from guests.qmp import connect_qmp, qmp_option, wait_status
from virtio_blk_helpers import limit_file_size, two_disk_command


async def _io_status(qmp) -> dict[str, str]:
    return {drive["device"]: drive["io-status"] for drive in await qmp.execute("query-block")}


async def _events(process: subprocess.Popen, sock: Path, werror: str) -> list[dict]:
    """The events of the run, and with ``stop`` query-block's io-status once stopped."""
    qmp = await connect_qmp(sock)
    try:
        await qmp.execute("cont")
        if werror == "stop":
            assert await wait_status(qmp, leaving="running") == "io-error"
            await asyncio.sleep(0.1)  # let the STOP event arrive after the status
            io_status = await _io_status(qmp)
            await qmp.execute("quit")
        else:  # the guest sees the error and exits
            for _ in range(2400):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.025)
    finally:
        with contextlib.suppress(EOFError, ConnectionError):  # the emulator went away
            await qmp.disconnect()
    events = [
        {"event": e["event"], **({"data": e["data"]} if "data" in e else {})}
        for e in qmp.events.clear()
    ]
    if werror == "stop":
        events.append({"event": "query-block io-status", "data": io_status})
    return events


def run(emulator: str, kernel: Path, workdir: Path, werror: str) -> list[dict]:
    command, _raw = two_disk_command(emulator, kernel, workdir, werror, "poll")
    sock = workdir / "qmp.sock"
    process = subprocess.Popen(
        [*command, "-S", *qmp_option(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit_file_size,
    )
    try:
        return asyncio.run(_events(process, sock, werror))
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("werror", ["stop", "report", "enospc", "ignore"])
def test_block_io_error_event_as_qemu(virtio_blk_kernel, tmp_path, werror):
    runs = {}
    for emulator in ("qemu", "arctern"):
        (tmp_path / emulator).mkdir()
        events = run(emulator, virtio_blk_kernel, tmp_path / emulator, werror)
        errors = [e["data"] for e in events if e["event"] == "BLOCK_IO_ERROR"]
        for data in errors:  # generated names differ from run to run (QEMU's too)
            assert data.pop("node-name").startswith("#block"), (emulator, data)
        runs[emulator] = errors
        if werror == "stop":
            names = [e["event"] for e in events]
            assert names[names.index("BLOCK_IO_ERROR") + 1] == "STOP", (emulator, names)
            runs[f"{emulator} io-status"] = events[-1]["data"]
    action = {"enospc": "report"}.get(werror, werror)  # EFBIG is not ENOSPC
    assert runs["qemu"][0] == {
        "device": "d1",
        "operation": "write",
        "action": action,
        "reason": "File too large",
        **({"nospace": False} if werror in ("stop", "enospc") else {}),
    }, runs["qemu"]
    assert runs["arctern"] == runs["qemu"]
    if werror == "stop":
        assert runs["qemu io-status"] == {"d0": "ok", "d1": "failed"}  # EFBIG is not nospace
        assert runs["arctern io-status"] == runs["qemu io-status"]
