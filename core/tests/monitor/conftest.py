"""A quiet machine whose main loop runs in a thread, so QMP clients can talk to it.

``IdleMachine`` has real RAM, an AddressSpace and a real image, fires the
``arctern_guest_state_changed`` hook like the machine does, and runs no
guest; ``MainLoop`` calls its poll hooks (monitor, migration) every
millisecond, as the machine's main loop does between CPU slices.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from qemu.qmp import QMPClient

from arctern.block.image import create_image, open_image
from arctern.machine.memory import RAM, AddressSpace
from arctern.monitor.monitor import Monitor
from arctern.plugins import Registry


class StateCPU:
    arch = "i386"

    def __init__(self) -> None:
        self.eip = 0x1000

    def get_state(self) -> dict:
        return {"eip": self.eip}

    def set_state(self, state: dict) -> None:
        self.eip = state["eip"]


class IdleMachine:
    def __init__(self, registry: Registry, image: str | None, *, incoming: bool = False):
        self.registry = registry
        self.ram = RAM(1 << 20)
        self.address_space = AddressSpace(self.ram)
        self.cpus = [StateCPU()]
        self.devices: list = []
        self.drives = {}
        if image:
            self.drives["disk0"] = open_image(
                image, fmt="raw", active=not incoming, registry=registry
            )
        self.runstate = "inmigrate" if incoming else "running"
        self.exit_status: int | None = None
        self.resets = 0
        self.hooks: list[Callable[[], None]] = []

    def add_poll_hook(self, hook: Callable[[], None], fds=None) -> None:
        self.hooks.append(hook)

    def _changed(self, running: bool, reason: str) -> None:
        self.registry.notify(
            "arctern_guest_state_changed", machine=self, running=running, reason=reason
        )

    def pause(self, reason: str = "paused") -> None:
        was_running = self.runstate == "running"
        self.runstate = reason
        if was_running:
            self._changed(False, reason)

    def resume(self) -> None:
        self.runstate = "running"
        self._changed(True, "running")

    def reset(self) -> None:
        self.resets += 1
        self._changed(self.runstate == "running", "reset")

    def request_exit(self, status: int) -> None:
        self.exit_status = status


class MainLoop(threading.Thread):
    def __init__(self, *machines: IdleMachine) -> None:
        super().__init__(daemon=True)
        self.machines = machines
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for machine in self.machines:
                for hook in machine.hooks:
                    hook()
            time.sleep(0.001)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


@pytest.fixture
def registry() -> Registry:
    return Registry().discover(["block", "migration"])


@pytest.fixture
def image(tmp_path, registry) -> str:
    path = str(tmp_path / "disk.raw")
    create_image(path, "raw", 1 << 20, registry=registry)
    return path


@pytest.fixture
def idle_machine(registry) -> Callable[..., IdleMachine]:
    return lambda image, incoming=False: IdleMachine(registry, image, incoming=incoming)


@pytest.fixture
def served(tmp_path, registry, image):
    """A running IdleMachine with a monitor on a unix QMP socket: (machine, monitor, path)."""
    machine = IdleMachine(registry, image)
    monitor = Monitor(machine, registry=registry, name="guest-a")
    path = str(tmp_path / "qmp.sock")
    monitor.add_qmp(f"unix:{path},server=on,wait=off")
    loop = MainLoop(machine)
    loop.start()
    yield machine, monitor, path
    loop.stop()
    monitor.close()


@pytest.fixture(name="qmp")
def qmp_fixture() -> Callable:
    """``qmp(address, coroutine_function)``: run it with a connected QMPClient."""

    def run(address, body):
        async def session():
            client = QMPClient("test")
            await asyncio.wait_for(client.connect(address), 5)
            try:
                return await asyncio.wait_for(body(client), 20)
            finally:
                await client.disconnect()

        return asyncio.run(session())

    return run
