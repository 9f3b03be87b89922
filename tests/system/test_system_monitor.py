"""arctern-system with -S and -qmp: the guest waits in prelaunch until a QMP client says cont.

Driven with the qemu.qmp client library, like a management tool would drive QEMU.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from guests.build import BASE_ARGS, emulator_command
from qemu.qmp import ConnectError, ExecInterruptedError, QMPClient

HERE = Path(__file__).parent


async def connect(socket_path: Path) -> QMPClient:
    """Connect once the server listens (the socket file may appear just before that)."""
    deadline = time.monotonic() + 60
    while True:
        client = QMPClient("test")
        try:
            await client.connect(str(socket_path))
            return client
        except ConnectError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def drive_qmp(socket_path: Path) -> list:
    client = await connect(socket_path)
    try:
        before = await client.execute("query-status")
        assert await client.execute("query-name") == {"name": "testguest"}
        try:
            await client.execute("cont")
        except (ExecInterruptedError, EOFError, ConnectionError):
            pass  # the guest ran and exited before the reply was read: the exit status tells
        return [before]
    finally:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()  # the emulator may be gone already


@contextlib.contextmanager
def emulator_with_qmp(emulator: str, sock: Path, kernel: Path, *args: str):
    """Start ``emulator`` with a QMP socket; yield the process once the socket exists."""
    proc = subprocess.Popen(
        [
            *emulator_command(emulator),
            *BASE_ARGS,
            "-kernel",
            str(kernel),
            *args,
            "-qmp",
            f"unix:{sock},server=on,wait=off",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("emulator", ["qemu", "arctern"])
def test_prelaunch_until_cont_then_the_guest_runs_to_its_exit(guest_elf, tmp_path, emulator):
    kernel = guest_elf(HERE / "printf_guest.c")
    args = ("-S", "-name", "guest=testguest,debug-threads=on")
    with emulator_with_qmp(emulator, tmp_path / "qmp.sock", kernel, *args) as proc:
        (status,) = asyncio.run(drive_qmp(tmp_path / "qmp.sock"))
        assert status == {"status": "prelaunch", "singlestep": False, "running": False}
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == (6 << 1) | 1, err
        assert out.startswith(b"magic 0x2badb002")


async def power_cycle(socket_path: Path) -> list[str]:
    """Wait for the power-off, system_reset, cont, wait for the next power-off; quit."""
    client = await connect(socket_path)

    async def wait_for(state: str) -> str:
        for _ in range(600):
            status = (await client.execute("query-status"))["status"]
            if status == state:
                break
            await asyncio.sleep(0.05)
        return status

    try:
        states = [await wait_for("shutdown")]
        await client.execute("system_reset")  # QEMU acts on it in its next main-loop turn
        states.append(await wait_for("prelaunch"))
        await client.execute("cont")
        states.append(await wait_for("shutdown"))
        with contextlib.suppress(ExecInterruptedError, EOFError, ConnectionError):
            await client.execute("quit")
        return states
    finally:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()


@pytest.mark.parametrize("emulator", ["qemu", "arctern"])
def test_no_shutdown_keeps_the_machine_for_reset_and_cont(guest_elf, tmp_path, emulator):
    kernel = guest_elf(HERE / "power_guest.c")
    args = ("-append", "poweroff", "-no-shutdown")
    with emulator_with_qmp(emulator, tmp_path / "qmp.sock", kernel, *args) as proc:
        assert asyncio.run(power_cycle(tmp_path / "qmp.sock")) == [
            "shutdown",
            "prelaunch",
            "shutdown",
        ]
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out == b"power guest: poweroff\n" * 2
