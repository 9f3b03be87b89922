"""A machine with virtio-rng migrates while its guest waits for entropy.

The device may hand out 32 bytes per period of 2^32 - 1 ms (QEMU's
``max-bytes``/``period``), so the guest's second request waits on the source
for good. The running source migrates (``-incoming unix:``); the destination
starts a fresh period, as QEMU's does, fills the waiting buffer and the guest
finishes there. The output each side printed must be QEMU's.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import time
from pathlib import Path

from guests.build import BASE_ARGS, emulator_command
from guests.qmp import connect_qmp, disconnect_all, migrate, migration_pair
from guests.rng_guest import SOURCES

WAITING = "waiting for the next period"
TIMEOUT = 60


async def _migrate(src_sock: Path, dst_sock: Path, uri: str) -> str | None:
    src, dst = await connect_qmp(src_sock), await connect_qmp(dst_sock)
    try:
        status = await migrate(src, uri)
        await src.execute("quit")
        return status
    finally:
        await disconnect_all(src, dst)


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
    with migration_pair(command, workdir) as pair:
        facts = {"source output": _read_until(pair.source, WAITING)}
        facts["migration"] = asyncio.run(_migrate(pair.src_sock, pair.dst_sock, pair.uri))
        rest = pair.source.communicate(timeout=TIMEOUT)[0].decode().splitlines()
        facts["source output"] += rest
        output = pair.dest.communicate(timeout=TIMEOUT)[0]
        facts["destination output"] = output.decode().splitlines()
        facts["destination exit"] = pair.dest.returncode
    return facts


def test_waiting_request_is_served_after_migration(guest_elf, tmp_path):
    kernel = guest_elf(SOURCES)
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
