"""A machine with virtio-rng migrates while its guest waits for entropy.

The device may hand out 32 bytes per period of 2^32 - 1 ms (QEMU's
``max-bytes``/``period``), so the guest's second request waits on the source
for good. The running source migrates (``-incoming unix:``); the destination
starts a fresh period, as QEMU's does, fills the waiting buffer and the guest
finishes there. The output each side printed must be QEMU's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import time
from pathlib import Path

from qemu.qmp import ConnectError, QMPClient

from guests.build import BASE_ARGS, emulator_command

HERE = Path(__file__).parent
GUEST = [HERE / "virtio_rng_guest.c", HERE / "virtio_mmio.c"]
WAITING = "waiting for the next period"
TIMEOUT = 60


async def _qmp(sock: Path) -> QMPClient:
    """Connect, retrying while the emulator starts listening."""
    client = QMPClient("virtio-rng-migration")
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await client.connect(str(sock))
            return client
        except (ConnectError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.025)


async def _migrate(src_sock: Path, dst_sock: Path, uri: str) -> str:
    src, dst = await _qmp(src_sock), await _qmp(dst_sock)
    try:
        await src.execute("migrate", {"uri": uri})
        for _ in range(TIMEOUT * 40):
            status = (await src.execute("query-migrate")).get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.025)
        await src.execute("quit")
        return status
    finally:
        for client in (src, dst):
            with contextlib.suppress(EOFError, ConnectionError):  # the source quit under us
                await client.disconnect()


def _read_until(process: subprocess.Popen, line: str) -> list[str]:
    """The lines ``process`` prints up to and including ``line`` (which must end them)."""
    text = b""
    deadline = time.monotonic() + TIMEOUT
    fd = process.stdout.fileno()
    while f"{line}\n".encode() not in text:
        ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise AssertionError(f"no {line!r} from the source, only {text!r}")
        text += chunk
    return text.decode().splitlines()


def migrate_waiting_guest(emulator: str, kernel: Path, workdir: Path) -> dict:
    command = [
        *emulator_command(emulator),
        *BASE_ARGS,
        "-kernel",
        str(kernel),
        "-device",
        "virtio-rng-device,max-bytes=32,period=4294967295",
        "-append",
        "limit",
    ]
    src_sock, dst_sock, uri = workdir / "src.qmp", workdir / "dst.qmp", f"unix:{workdir}/mig"
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    source = subprocess.Popen([*command, "-qmp", f"unix:{src_sock},server=on,wait=off"], **pipes)
    dest = subprocess.Popen(
        [*command, "-qmp", f"unix:{dst_sock},server=on,wait=off", "-incoming", uri], **pipes
    )
    try:
        facts = {"source output": _read_until(source, WAITING)}
        facts["migration"] = asyncio.run(_migrate(src_sock, dst_sock, uri))
        rest = source.communicate(timeout=TIMEOUT)[0].decode().splitlines()
        facts["source output"] += rest
        facts["destination output"] = dest.communicate(timeout=TIMEOUT)[0].decode().splitlines()
        facts["destination exit"] = dest.returncode
    finally:
        for process in (source, dest):
            process.kill()
            process.wait()
    return facts


def test_waiting_request_is_served_after_migration(guest_elf, tmp_path):
    kernel = guest_elf(GUEST)
    runs = {}
    for emulator in ("qemu", "arctern"):
        (tmp_path / emulator).mkdir()
        runs[emulator] = facts = migrate_waiting_guest(emulator, kernel, tmp_path / emulator)
        assert facts["migration"] == "completed", facts
        assert facts["source output"][1:] == ["64-byte request: 32 bytes this period", WAITING]
        assert facts["destination output"] == [
            "16-byte request: 16 bytes, differ from the first",
            "done",
        ], facts
        assert facts["destination exit"] == 1, facts
    assert runs["arctern"] == runs["qemu"]
