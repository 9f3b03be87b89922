"""A virtio-blk request in flight moves with the machine and is replayed at the destination.

The guest sleeps until its disks interrupt, through the PIC (``acpi=off``) or
through the I/O APIC and the local APIC (the default machine), so the interrupt
controllers' state migrates too. The source may not write past 1 MiB of the raw
disk (RLIMIT_FSIZE, SIGXFSZ ignored), so the guest's write to the last sector
stops the source in run state ``io-error`` (``werror=stop``) with the request
popped but not completed. The stopped source migrates to a destination without
that limit (``-incoming unix:``, shared images); ``cont`` there replays the
request and the guest finishes. QEMU and arctern-system must split the guest's
output between the two sides identically, and the write must be on the disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from guests.qmp import connect_qmp, disconnect_all, migrate, migration_pair, wait_status
from virtio_blk_helpers import LIMIT, SECTOR, limit_file_size, two_disk_command


async def _migrate_stopped_source(src_sock: Path, dst_sock: Path, uri: str) -> dict:
    src, dst = await connect_qmp(src_sock), await connect_qmp(dst_sock)
    try:
        facts = {"source": await wait_status(src, leaving="running")}
        facts["migration"] = await migrate(src, uri)
        facts["destination"] = await wait_status(dst, leaving="inmigrate")
        await dst.execute("cont")
        await src.execute("quit")
    finally:
        await disconnect_all(src, dst)
    return facts


def run_migration(emulator: str, kernel: Path, workdir: Path, mode: str) -> dict:
    command, raw = two_disk_command(emulator, kernel, workdir, "stop", mode)
    with migration_pair(command, workdir, source_preexec=limit_file_size) as pair:
        facts = asyncio.run(_migrate_stopped_source(pair.src_sock, pair.dst_sock, pair.uri))
        facts["source output"] = pair.source.communicate(timeout=60)[0].decode().splitlines()
        facts["destination output"] = pair.dest.communicate(timeout=120)[0].decode().splitlines()
        facts["destination exit"] = pair.dest.returncode
    facts["last sector"] = raw.read_bytes()[2 * LIMIT - SECTOR :][:22]
    return facts


@pytest.mark.parametrize("mode", ["irq", "ioapic"])  # PIC on acpi=off; IO-APIC + LAPIC
def test_in_flight_request_is_replayed_after_migration(virtio_blk_kernel, tmp_path, mode):
    runs = {}
    for emulator in ("qemu", "arctern"):
        (tmp_path / emulator).mkdir()
        runs[emulator] = facts = run_migration(
            emulator, virtio_blk_kernel, tmp_path / emulator, mode
        )
        assert facts["source"] == "io-error" and facts["migration"] == "completed", facts
        # QEMU carries the run state over: the destination too waits in io-error for cont
        assert facts["destination"] == "io-error", facts
        assert facts["destination exit"] == 1, facts
        assert facts["destination output"][-1] == "done", facts
        assert facts["last sector"] == b"written by the guest\x001", facts
    for side in ("source output", "destination output"):
        assert runs["arctern"][side] == runs["qemu"][side]
