"""Faults during a live migration between arctern-system processes.

Whatever breaks (the destination or the source killed, the connection cut, a
saved stream corrupted or truncated, the user cancelling), the surviving side
keeps the guest or says why in one line, the image is active on at most one
side and ends clean, and the guest's output is never lost or doubled.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import threading
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
)

GUEST_ROUNDS = 600  # the guest runs for seconds after MIGRATE_AT, longer than the migration
SLOW = 1 << 20  # bytes/s: the first pass (4 MiB of guest data) takes long enough to break it


async def _start_slow_migration(
    guest: Guest, tmp: Path, uri: str, listen: str | None = None, wait_active: bool = True
):
    image = tmp / "disk.qcow2"
    create_image(image)
    args = machine_args(guest, image)
    dest = Side("dst", tmp, [*args, "-incoming", listen or uri])
    source = Side("src", tmp, args)
    await dest.connect()
    await source.connect()
    await source.wait_output(MIGRATE_AT)
    await source.client.execute("migrate-set-parameters", {"max-bandwidth": SLOW})
    await source.client.execute("migrate", {"uri": uri})
    if wait_active:
        await source.wait_status("active")
        await dest.wait_status("active")
    return image, source, dest


def _one_line_error(side: Side) -> str:
    stderr = side.process.stderr.read().decode()
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr


async def _source_finishes_alone(source: Side, reference: str, image: Path) -> None:
    assert (await source.client.execute("query-status"))["status"] == "running"
    assert await source.exit_status() == 1
    assert source.output() == reference
    assert check(image).returncode == 0


def test_destination_killed_mid_stream(guest, reference, tmp_path):
    async def scenario():
        uri = f"tcp:127.0.0.1:{free_port()}"
        image, source, dest = await _start_slow_migration(guest, tmp_path, uri)
        dest.process.send_signal(signal.SIGKILL)
        info = await source.wait_status("failed")
        assert info["error-desc"]
        await dest.disconnect()
        await _source_finishes_alone(source, reference, image)

    asyncio.run(scenario())


def test_source_killed_mid_stream(guest, reference, tmp_path):
    async def scenario():
        uri = f"unix:{tmp_path / 'mig.sock'}"
        image, source, dest = await _start_slow_migration(guest, tmp_path, uri)
        source.process.send_signal(signal.SIGKILL)
        await source.disconnect()
        after_kill = image_state(image)
        assert await dest.exit_status() == 1  # as QEMU: load of migration failed, exit 1
        assert "load of migration failed" in _one_line_error(dest)
        assert image_state(image) == after_kill  # the destination never activated the image
        assert check(image).returncode in (0, 3)  # a killed writer may leak, never corrupt

    asyncio.run(scenario())


class CuttingProxy(threading.Thread):
    """Forwards one tcp connection and cuts both ends after ``limit`` bytes."""

    def __init__(self, target_port: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.limit = limit

    def run(self) -> None:
        incoming, _ = self.listener.accept()
        outgoing = socket.create_connection(("127.0.0.1", self.target_port))
        passed = 0
        while passed < self.limit:
            data = incoming.recv(min(65536, self.limit - passed))
            if not data:
                break
            outgoing.sendall(data)
            passed += len(data)
        for sock in (incoming, outgoing, self.listener):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_connection_cut(guest, reference, tmp_path):
    async def scenario():
        port = free_port()
        # Cut early in the first pass: at 1 MiB/s a cut after 1 MiB came about a second in,
        # by when the source guest could already have finished its run.
        proxy = CuttingProxy(port, limit=16 << 10)
        proxy.start()
        # the cut may come before either side reports "active": wait for the failure only
        image, source, dest = await _start_slow_migration(
            guest,
            tmp_path,
            f"tcp:127.0.0.1:{proxy.port}",
            listen=f"tcp:127.0.0.1:{port}",
            wait_active=False,
        )
        await source.wait_status("failed")
        assert await dest.exit_status() == 1
        assert "load of migration failed" in _one_line_error(dest)
        await _source_finishes_alone(source, reference, image)

    asyncio.run(scenario())


def test_cancel_mid_stream(guest, reference, tmp_path):
    async def scenario():
        uri = f"tcp:127.0.0.1:{free_port()}"
        image, source, dest = await _start_slow_migration(guest, tmp_path, uri)
        await source.client.execute("migrate_cancel")
        await source.wait_status("cancelled")
        assert await dest.exit_status() == 1
        await _source_finishes_alone(source, reference, image)

    asyncio.run(scenario())


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_saved_stream_is_refused_and_the_source_can_go_on(
    guest, reference, tmp_path, damage
):
    async def scenario():
        image = tmp_path / "disk.qcow2"
        create_image(image)
        args = machine_args(guest, image)
        state = tmp_path / "state"
        source = Side("src", tmp_path, args)
        await source.connect()
        await source.wait_output(MIGRATE_AT)
        await source.client.execute("migrate", {"uri": f"exec:cat > {state}"})
        await source.wait_status("completed")
        data = bytearray(state.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x10
        else:
            del data[len(data) * 2 // 3 :]
        state.write_bytes(data)
        dest = Side("dst", tmp_path, [*args, "-incoming", f"exec:cat {state}"])
        assert await dest.exit_status() == 1
        error = _one_line_error(dest)
        assert ("checksum" if damage == "flip" else "truncated") in error
        # The guest is paused in postmigrate at the source; cont takes the image back.
        await source.client.execute("cont")
        await _source_finishes_alone(source, reference, image)

    asyncio.run(scenario())


def test_verify_catches_a_page_corrupted_at_the_destination(guest, reference, tmp_path):
    """A test-only switch flips one bit of RAM at the destination after loading."""
    switch = tmp_path / "corrupt"
    switch.mkdir()
    (switch / "sitecustomize.py").write_text(
        "from arctern.migration import state\n"
        "load = state.StateCollector.apply\n"
        "def apply(self, machine):\n"
        "    load(self, machine)\n"
        "    machine.ram.data[0x200000] ^= 1\n"
        "state.StateCollector.apply = apply\n"
    )

    async def scenario():
        image = tmp_path / "disk.qcow2"
        create_image(image)
        args = machine_args(guest, image)
        uri = f"tcp:127.0.0.1:{free_port()}"
        env = {**os.environ, "PYTHONPATH": str(switch)}
        dest = Side("dst", tmp_path, [*args, "-incoming", uri], env)
        source = Side("src", tmp_path, args)
        await dest.connect()
        await source.connect()
        await source.wait_output(MIGRATE_AT)
        caps = [{"capability": "verify", "state": True}]
        await source.client.execute("migrate-set-capabilities", {"capabilities": caps})
        await source.client.execute("migrate", {"uri": uri})
        info = await source.wait_status("completed", "failed")
        assert info["status"] == "failed"
        assert "destination refused the migration: verify:" in info["error-desc"]
        assert await dest.exit_status() == 1
        assert "verify" in _one_line_error(dest)
        await _source_finishes_alone(source, reference, image)

    asyncio.run(scenario())


FILE_SIZE_LIMIT = 8 << 20  # the image reaches it after about 120 rounds (64 KiB each)


def _limit_file_size() -> None:
    """In the source process: writes past FILE_SIZE_LIMIT fail with EFBIG (no SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, resource.RLIM_INFINITY))


def test_guest_stopped_by_an_io_error_arrives_stopped_by_it(guest, reference, tmp_path):
    """werror=stop on a source that cannot grow its image: BLOCK_IO_ERROR, run state io-error;
    migrated, the destination is in io-error too (as with QEMU) and cont replays the write."""
    image = tmp_path / "disk.qcow2"

    async def scenario():
        create_image(image)
        args = machine_args(guest, image)
        args[-1] += ",werror=stop"
        uri = f"unix:{tmp_path / 'mig.sock'}"
        dest = Side("dst", tmp_path, [*args, "-incoming", uri])
        await dest.connect()
        source = Side("src", tmp_path, args, preexec_fn=_limit_file_size)
        await source.connect()
        await source.wait_runstate("io-error")
        events = source.client.events.clear()
        await source.client.execute("migrate", {"uri": uri})
        migration = await source.wait_status("completed", "failed")
        arrived = await dest.wait_runstate("io-error", "paused", "running")
        await dest.client.execute("cont")
        status = await dest.exit_status()
        await source.stop()
        errors = [e["data"] for e in events if e["event"] == "BLOCK_IO_ERROR"]
        return errors, migration["status"], arrived, status, source.output() + dest.output()

    errors, migration, arrived, status, output = asyncio.run(scenario())
    assert errors[0].pop("node-name").startswith("#block")  # the drive's root node, as QEMU
    assert errors == [
        {
            "device": "d0",
            "operation": "write",
            "action": "stop",
            "nospace": False,
            "reason": "File too large",
        }
    ]
    assert (migration, arrived, status) == ("completed", "io-error", 1)
    assert output == reference
    # Clean, as with QEMU: the clusters allocated for the write that failed (EFBIG) were
    # given back before cont replayed it (qcow2_alloc_cluster_abort).
    result = check(image)
    assert result.returncode == 0, result.stdout + result.stderr
