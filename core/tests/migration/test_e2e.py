"""Live migration end to end: arctern-system processes driven by the qemu.qmp client.

A guest built from C (microvm's built-in migration guest, the one arctern-demo
runs) writes, reads back and verifies sectors of a qcow2 image, a new cluster
each round, and keeps rewriting RAM.
It is migrated mid-run over tcp, unix and exec (through a file) to a
destination started with -S and ``-incoming``; while both sides have the image
inactive nothing may write to it; after ``cont`` the guest finishes at the
destination. What the two sides printed must be exactly QEMU's output for the
same guest without migration, and ``qemu-img check`` must find the image clean.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from e2e_support import (
    MIGRATE_AT,
    Guest,
    Side,
    check,
    create_image,
    free_port,
    image_state,
    machine_args,
    third_writer,
)


async def _migrate(
    guest: Guest, tmp: Path, transport: str, env: dict | None = None, verify: bool = False
) -> dict:
    """Run the whole scenario; returns what the test checks."""
    image = tmp / "disk.qcow2"
    create_image(image)
    args = machine_args(guest, image)
    uri = {
        "tcp": f"tcp:127.0.0.1:{free_port()}",
        "unix": f"unix:{tmp / 'migration.sock'}",
        "exec": f"exec:cat > {tmp / 'state'}",
    }[transport]
    incoming = f"exec:cat {tmp / 'state'}" if transport == "exec" else uri
    dest = None
    if transport != "exec":  # a destination that opened the image before the source changed it
        dest = Side("dst", tmp, [*args, "-S", "-incoming", incoming], env)
        await dest.connect()
    source = Side("src", tmp, args)
    await source.connect()
    await source.wait_output(MIGRATE_AT)
    result: dict = {"locked_during": third_writer(image)}
    await source.client.execute(
        "migrate-set-capabilities",
        {
            "capabilities": [
                {"capability": "events", "state": True},
                {"capability": "verify", "state": verify},
            ]
        },
    )
    await source.client.execute("migrate", {"uri": uri})
    result["migration"] = await source.wait_status("completed", "failed", timeout=120)
    result["source_state"] = (await source.client.execute("query-status"))["status"]
    result["events"] = [
        (e["event"], e.get("data", {}).get("status")) for e in source.client.events.clear()
    ]
    if dest is None:
        dest = Side("dst", tmp, [*args, "-S", "-incoming", incoming], env)
        await dest.connect()
    await dest.wait_runstate("paused")
    before = image_state(image)
    await asyncio.sleep(0.3)
    result["unchanged_while_inactive"] = image_state(image) == before
    await dest.client.execute("cont")
    result["locked_after"] = third_writer(image)
    result["dest_status"] = await dest.exit_status()
    await source.stop()
    result["output"] = source.output() + dest.output()
    result["check"] = check(image)
    return result


@pytest.mark.parametrize(
    "transport, verify", [("tcp", False), ("unix", True), ("exec", True)], ids=str
)
def test_running_guest_moves_and_nothing_is_lost(guest, reference, tmp_path, transport, verify):
    """With verify, the digests of RAM, the i386 CPU and every device must match too."""
    result = asyncio.run(_migrate(guest, tmp_path, transport, verify=verify))
    assert result["migration"]["status"] == "completed", result["migration"]
    assert result["source_state"] == "postmigrate"
    statuses = [status for event, status in result["events"] if event == "MIGRATION"]
    assert statuses == ["setup", "active", "device", "completed"]
    assert ("STOP", None) in result["events"]
    assert result["unchanged_while_inactive"]  # the source wrote nothing after inactivating
    assert result["dest_status"] == 1  # the guest's exit(0) through isa-debug-exit
    assert result["output"] == reference
    assert result["check"].returncode == 0, result["check"].stdout
    for key in ("locked_during", "locked_after"):
        assert 'Failed to get "write" lock' in result[key].stderr, key


def test_without_invalidate_cache_the_destination_goes_wrong(guest, reference, tmp_path):
    """The same run with the qcow2 driver's invalidate_cache inert at the destination."""
    switch = tmp_path / "inert"
    switch.mkdir()
    (switch / "sitecustomize.py").write_text(
        "from arctern_block_qcow2.driver import Qcow2Driver\n"
        "Qcow2Driver.invalidate_cache = lambda self: None  # test-only: trust stale metadata\n"
    )
    env = {**os.environ, "PYTHONPATH": str(switch)}
    result = asyncio.run(_migrate(guest, tmp_path, "tcp", env))
    assert result["migration"]["status"] == "completed"
    # The destination trusts the L1 table it read before the source allocated: the
    # guest reads back zeroes where it wrote data (and, depending on how far it gets,
    # qemu-img check may also find the source's tables leaked).
    assert "FAIL: " in result["output"]
    assert result["output"] != reference


def test_paused_guest_a_to_b_to_c_then_runs(guest, reference, tmp_path):
    """Started with -S and never run: A to B (unix) to C (tcp), then cont on C."""

    async def scenario():
        image = tmp_path / "disk.qcow2"
        create_image(image)
        args = machine_args(guest, image)
        hops = [f"unix:{tmp_path / 'ab.sock'}", f"tcp:127.0.0.1:{free_port()}"]
        sides = [Side("a", tmp_path, [*args, "-S"])]
        await sides[0].connect()
        for name, uri in zip("bc", hops, strict=True):
            nxt = Side(name, tmp_path, [*args, "-incoming", uri])
            await nxt.connect()
            await sides[-1].client.execute("migrate", {"uri": uri})
            info = await sides[-1].wait_status("completed", "failed")
            assert info["status"] == "completed", info
            # Never started: QEMU carries "prelaunch" over; cont starts it wherever it is.
            assert await nxt.wait_runstate("prelaunch") == "prelaunch"
            sides.append(nxt)
        last = sides[-1]
        await last.client.execute("cont")
        status = await last.exit_status()
        for side in sides[:-1]:
            assert side.output() == ""  # never ran
            await side.stop()
        return status, last.output()

    status, output = asyncio.run(scenario())
    assert (status, output) == (1, reference)
    assert check(tmp_path / "disk.qcow2").returncode == 0
