"""A real Machine with an idle guest whose main loop runs in a thread, for QMP clients.

The board is registered as a plugin: one CPU that waits (like a guest in
HLT), RAM and a raw drive. ``MainLoop`` runs ``machine.run_for`` in a thread
so the test can talk QMP to it from the asyncio client meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from qemu.qmp import QMPClient

from arctern.block.image import open_image
from arctern.cpu.base import CPU
from arctern.machine.machine import Machine, MachineType
from arctern.monitor.monitor import Monitor
from arctern.plugins import Registry


class WaitingCPU(CPU):
    name = "test-waiting"
    arch = "test"

    def reset(self) -> None:
        self.eip = 0x1000

    def run(self, budget: int) -> int:
        return 0  # halted: the loop idles, waking for monitor sockets

    def get_state(self) -> dict:
        return {"eip": self.eip}

    def set_state(self, state: dict) -> None:
        self.eip = state["eip"]


class WaitingBoard(MachineType):
    name = "test-waiting-board"
    arch = "test"
    default_cpu = "test-waiting"
    default_ram_size = 1 << 20

    def build(self, machine: Machine) -> None:
        machine.create_cpu()

    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        """No kernel: the board only has to exist."""


class MainLoop(threading.Thread):
    def __init__(self, machine: Machine) -> None:
        super().__init__(daemon=True)
        self.machine = machine
        self.stopping = threading.Event()

    def run(self) -> None:
        self.machine.run_for(until=self.stopping.is_set)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


@pytest.fixture
def registry(add_target) -> Registry:
    registry = Registry().discover(["block", "migration"])
    add_target(registry, WaitingCPU, WaitingBoard)
    return registry


@pytest.fixture
def make_machine(registry) -> Callable[..., Machine]:
    machines = []

    def make(image: str, incoming: bool = False) -> Machine:
        machine = Machine("test-waiting-board", registry=registry)
        drive = open_image(image, fmt="raw", active=not incoming, registry=registry)
        machine.add_drive("disk0", drive)
        machine.build()
        machine.power_on()
        if not incoming:
            machine.resume()
        machines.append(machine)
        return machine

    yield make
    for machine in machines:
        machine.close()


@pytest.fixture
def serve(tmp_path, registry, make_machine):
    """``serve(image, defer_incoming=False)``: a machine with a monitor on a unix QMP
    socket and its main loop running; returns (machine, monitor, socket path)."""
    loops, monitors = [], []

    def start(image: str, *, defer_incoming: bool = False):
        machine = make_machine(image, incoming=defer_incoming)
        monitor = Monitor(
            machine, registry=registry, name="guest-a" if not loops else f"guest-{len(loops)}"
        )
        if defer_incoming:
            monitor.migration.defer_incoming()
        path = str(tmp_path / f"qmp{len(loops)}.sock")
        monitor.add_qmp(f"unix:{path},server=on,wait=off")
        loop = MainLoop(machine)
        loop.start()
        loops.append(loop)
        monitors.append(monitor)
        return machine, monitor, path

    yield start
    for loop in loops:
        loop.stop()
    for monitor in monitors:
        monitor.close()


@pytest.fixture
def served(serve, image):
    """A running machine with a monitor on a unix QMP socket: (machine, monitor, path)."""
    return serve(image)


@pytest.fixture(name="qmp")
def qmp_fixture() -> Callable:
    """``qmp(address, coroutine_function)``: run it with a connected QMPClient."""

    def run(address, body):
        async def session():
            client = QMPClient("test")
            await asyncio.wait_for(client.connect(address), 60)
            try:
                return await asyncio.wait_for(body(client), 120)
            finally:
                await client.disconnect()

        return asyncio.run(session())

    return run
