"""Live migration end to end: arctern-system processes driven by the qemu.qmp client.

A guest built from C (guests/disk_writer.c) writes, reads back and verifies
sectors of a qcow2 image, a new cluster each round, and keeps rewriting RAM.
It is migrated mid-run over tcp, unix and exec (through a file) to a
destination started with -S and ``-incoming``; while both sides have the image
inactive nothing may write to it; after ``cont`` the guest finishes at the
destination. What the two sides printed must be exactly QEMU's output for the
same guest without migration, and ``qemu-img check`` must find the image clean.
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
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from guests.build import build_guest  # noqa: E402

ROUNDS = 200
ARCTERN = str(Path(sys.executable).with_name("arctern-system"))
GUEST_ARGS = ["-M", "microvm,acpi=off", "-m", "32", "-nodefaults", "-display", "none"]
MIGRATE_AT = "round 50 ok"


@pytest.fixture(scope="module")
def guest() -> Path:
    source = Path(__file__).parent / "guests" / "disk_writer.c"
    return build_guest(source, cflags=[f"-DROUNDS={ROUNDS}"])


def _create_image(path: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)


def _machine_args(guest: Path, image: Path) -> list[str]:
    return [
        *GUEST_ARGS,
        "-kernel",
        str(guest),
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1",
        "-drive",
        f"file={image},format=qcow2,if=none,id=d0",
        "-device",
        "virtio-blk-device,drive=d0",
    ]


@pytest.fixture(scope="module")
def reference(guest, tmp_path_factory) -> str:
    """What the guest prints without migration, under QEMU."""
    image = tmp_path_factory.mktemp("reference") / "disk.qcow2"
    _create_image(image)
    result = subprocess.run(
        ["qemu-system-i386", *_machine_args(guest, image), "-serial", "stdio"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert f"verified {ROUNDS} sectors" in result.stdout
    return result.stdout


class Side:
    """One arctern-system process, its serial output file and its QMP client."""

    def __init__(self, name: str, tmp: Path, args: list[str], env: dict | None = None) -> None:
        self.name = name
        self.serial = tmp / f"{name}.out"
        self.qmp_path = tmp / f"{name}.qmp"
        self.process = subprocess.Popen(
            [ARCTERN, *args, "-serial", f"file:{self.serial}"]
            + ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.client = QMPClient(name)

    async def connect(self) -> None:
        deadline = time.monotonic() + 30
        while not self.qmp_path.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.process.stderr.read().decode()}")
            assert time.monotonic() < deadline, f"{self.name} never opened its QMP socket"
            await asyncio.sleep(0.02)
        await self.client.connect(str(self.qmp_path))

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
            info = await self.client.execute("query-migrate")
            if info.get("status") in statuses:
                return info
            assert time.monotonic() < deadline, f"{self.name}: migration stuck in {info}"
            await asyncio.sleep(0.02)

    async def wait_runstate(self, *states: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (state := (await self.client.execute("query-status"))["status"]) not in states:
            assert time.monotonic() < deadline, f"{self.name} stuck in run state {state}"
            await asyncio.sleep(0.02)
        return state

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_state(image: Path) -> tuple[str, int]:
    return hashlib.sha256(image.read_bytes()).hexdigest(), os.stat(image).st_mtime_ns


def _third_writer(image: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write 0 512", str(image)], capture_output=True, text=True
    )


def _check(image: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)


async def _migrate(guest: Path, tmp: Path, transport: str, env: dict | None = None) -> dict:
    """Run the whole scenario; returns what the test checks."""
    image = tmp / "disk.qcow2"
    _create_image(image)
    args = _machine_args(guest, image)
    uri = {
        "tcp": f"tcp:127.0.0.1:{_free_port()}",
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
    result: dict = {"locked_during": _third_writer(image)}
    await source.client.execute(
        "migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}
    )
    await source.client.execute("migrate", {"uri": uri})
    result["migration"] = await source.wait_status("completed", "failed", timeout=120)
    result["source_state"] = (await source.client.execute("query-status"))["status"]
    if dest is None:
        dest = Side("dst", tmp, [*args, "-S", "-incoming", incoming], env)
        await dest.connect()
    await dest.wait_runstate("paused")
    before = _image_state(image)
    await asyncio.sleep(0.3)
    result["unchanged_while_inactive"] = _image_state(image) == before
    await dest.client.execute("cont")
    result["locked_after"] = _third_writer(image)
    result["dest_status"] = await dest.exit_status()
    await source.stop()
    result["output"] = source.output() + dest.output()
    result["check"] = _check(image)
    return result


@pytest.mark.parametrize("transport", ["tcp", "unix", "exec"])
def test_running_guest_moves_and_nothing_is_lost(guest, reference, tmp_path, transport):
    result = asyncio.run(_migrate(guest, tmp_path, transport))
    assert result["migration"]["status"] == "completed", result["migration"]
    assert result["source_state"] == "postmigrate"
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
    # guest reads back zeroes where it wrote data, and the source's tables leak.
    assert "FAIL read back" in result["output"]
    assert result["check"].returncode != 0, result["check"].stdout
