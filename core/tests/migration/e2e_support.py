"""Helpers of the end-to-end migration tests: the guest, arctern-system processes, QMP.

Imported by the test modules (conftest.py puts their directory on sys.path); not a test
module.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import QMPClient
from qemu.qmp.protocol import ConnectError, StateError

from arctern.plugins import Registry

ROUNDS = 300
MIGRATE_AT = "round 100: disk and RAM ok"  # a line the guest prints early: migrate from here
ARCTERN = str(Path(sys.executable).with_name("arctern-system"))
GUEST_ARGS = ["-M", "microvm,acpi=off", "-m", "32", "-nodefaults", "-display", "none"]


@dataclass(frozen=True)
class Guest:
    """microvm's built-in migration guest (the one arctern-demo runs), for ``rounds`` rounds.

    Each round writes a sector into the next 64 KiB slot of its disk (a new qcow2
    cluster), reads back an earlier round's sector and rewrites one page of a 4 MiB
    RAM area; it prints ``round N: disk and RAM ok`` every 100 rounds and at the
    end checks everything and exits 0 through isa-debug-exit (status 1).
    """

    elf: Path
    rounds: int


def guest(rounds: int = ROUNDS) -> Guest:
    registry = Registry().discover(["target"])
    return Guest(registry.machine_type("microvm").builtin_guest("migration-demo"), rounds)


def create_image(path: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)


def machine_args(guest: Guest, image: Path) -> list[str]:
    return [
        *GUEST_ARGS,
        "-kernel",
        str(guest.elf),
        "-append",
        f"rounds={guest.rounds}",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1",
        "-drive",
        f"file={image},format=qcow2,if=none,id=d0",
        "-device",
        "virtio-blk-device,drive=d0",
    ]


def reference_output(guest: Guest, directory: Path) -> str:
    """What the guest prints without migration, under QEMU."""
    image = directory / "disk.qcow2"
    create_image(image)
    result = subprocess.run(
        ["qemu-system-i386", *machine_args(guest, image), "-serial", "stdio"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 1 or "verified" not in result.stdout:
        raise AssertionError(f"the reference run failed: {result.stderr}")
    return result.stdout


class Side:
    """One emulator process (arctern-system unless told), its serial output file and its
    QMP client."""

    def __init__(
        self,
        name: str,
        tmp: Path,
        args: list[str],
        env: dict | None = None,
        preexec_fn: Callable[[], None] | None = None,
        program: str = ARCTERN,
    ) -> None:
        self.name = name
        self.serial = tmp / f"{name}.out"
        self.qmp_path = tmp / f"{name}.qmp"
        self.process = subprocess.Popen(
            [program, *args, "-serial", f"file:{self.serial}"]
            + ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=preexec_fn,
        )
        self.client = QMPClient(name)

    async def connect(self) -> None:
        """Connect once the socket listens: QEMU binds it (the file appears) an instant
        before it listens, so a refused connection is tried again."""
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.process.stderr.read().decode()}")
            assert time.monotonic() < deadline, f"{self.name} never opened its QMP socket"
            if self.qmp_path.exists():
                try:
                    await self.client.connect(str(self.qmp_path))
                    return
                except ConnectError as exc:
                    if not isinstance(exc.exc, ConnectionRefusedError):
                        raise
            await asyncio.sleep(0.02)

    def output(self) -> str:
        return self.serial.read_text() if self.serial.exists() else ""

    async def wait_output(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None, f"{self.name} exited early"
            assert time.monotonic() < deadline, f"{self.name} never printed {text!r}"
            await asyncio.sleep(0.02)

    async def wait_status(self, *statuses: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = await self._execute("query-migrate")
            if info.get("status") in statuses:
                return info
            assert time.monotonic() < deadline, f"{self.name}: migration stuck in {info}"
            await asyncio.sleep(0.02)

    async def wait_runstate(self, *states: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (state := (await self._execute("query-status"))["status"]) not in states:
            assert time.monotonic() < deadline, f"{self.name} stuck in run state {state}"
            await asyncio.sleep(0.02)
        return state

    async def _execute(self, command: str) -> dict:
        """Run a QMP command; if the process died under it, say so with its stderr."""
        try:
            return await self.client.execute(command)
        except (StateError, EOFError):
            if self.process.poll() is None:
                raise
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode} during {command}: "
                f"{self.process.stderr.read().decode()}"
            ) from None

    async def exit_status(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, f"{self.name} did not finish"
            await asyncio.sleep(0.05)
        await self.disconnect()
        return self.process.returncode

    async def disconnect(self) -> None:
        try:
            await self.client.disconnect()
        except EOFError:
            pass  # the process ended first and closed the socket: that is how it says goodbye

    async def stop(self) -> None:
        await self.disconnect()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_state(image: Path) -> tuple[str, int]:
    return hashlib.sha256(image.read_bytes()).hexdigest(), os.stat(image).st_mtime_ns


def third_writer(image: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write 0 512", str(image)], capture_output=True, text=True
    )


def check(image: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
