"""A small in-process machine for engine tests: real RAM, real images, a busy guest.

``LoopMachine`` offers what the migration engine uses of the machine API
(ram, cpus, devices with a vmstate, clock, drives, runstate, pause/resume,
add_poll_hook, request_exit); ``run_until`` interleaves guest slices and
poll hooks of several machines like their main loops would.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from arctern.block.image import open_image
from arctern.errors import StreamError
from arctern.machine.memory import PAGE_SIZE, RAM
from arctern.plugins import Registry

sys.path.insert(0, str(Path(__file__).parent))  # e2e_support, the end-to-end helpers


class PlainVMState:
    """A vmstate-like description saving named integer attributes."""

    def __init__(self, *fields: str, version: int = 1) -> None:
        self.fields = fields
        self.version = version

    def save(self, obj) -> dict:
        return {f: getattr(obj, f) for f in self.fields}

    def load(self, obj, data: dict, version: int) -> None:
        for f in self.fields:
            setattr(obj, f, data[f])

    def encode(self, data: dict) -> bytes:
        return json.dumps({"v": self.version, "d": data}).encode()

    def decode(self, raw: bytes) -> tuple[dict, int]:
        try:
            doc = json.loads(raw)
            return doc["d"], doc["v"]
        except (ValueError, KeyError, TypeError):
            raise StreamError("bad device state") from None


class TickDevice:
    """A device whose state the guest changes every slice."""

    name = "tick"
    vmstate = PlainVMState("ticks", "last")

    def __init__(self) -> None:
        self.id = None
        self.ticks = 0
        self.last = 0
        self.post_loaded = 0

    def post_load(self) -> None:
        self.post_loaded += 1


class StepCPU:
    def __init__(self) -> None:
        self.steps = 0

    def get_state(self) -> dict:
        return {"steps": self.steps, "regs": [self.steps & 0xFFFF, 7]}

    def set_state(self, state: dict) -> None:
        self.steps = state["steps"]


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def get_state(self) -> dict:
        return {"ns": self.now}

    def set_state(self, state: dict) -> None:
        self.now = state["ns"]


class LoopMachine:
    """Enough of a Machine to migrate: the guest dirties RAM and writes its disk each slice."""

    def __init__(
        self, registry: Registry, ram_size: int, image: str | None, *, incoming=False, fmt="raw"
    ):
        self.registry = registry
        self.ram = RAM(ram_size)
        self.cpus = [StepCPU()]
        self.devices = [TickDevice()]
        self.clock = Clock()
        self.drives = {}
        if image is not None:
            self.drives["disk0"] = open_image(
                image, fmt=fmt, active=not incoming, registry=registry
            )
        self.runstate = "inmigrate" if incoming else "running"
        self.exit_status: int | None = None
        self.hooks: list[Callable[[], None]] = []
        self.states: list[str] = []
        self.dirty_pages = 16  # pages the guest writes per slice

    def add_poll_hook(self, hook: Callable[[], None], fds=None) -> None:
        self.hooks.append(hook)

    def pause(self, reason: str = "paused") -> None:
        self.runstate = reason
        self.states.append(reason)

    def resume(self) -> None:
        self.runstate = "running"
        self.states.append("running")

    def request_exit(self, status: int) -> None:
        self.exit_status = status

    def guest_slice(self) -> None:
        cpu = self.cpus[0]
        cpu.steps += 1
        self.clock.now += 1000
        device = self.devices[0]
        device.ticks += 1
        device.last = cpu.steps
        pages = self.ram.size // PAGE_SIZE
        stamp = cpu.steps.to_bytes(8, "little")
        for i in range(self.dirty_pages):
            page = (cpu.steps * 7919 + i * 104729) % pages
            self.ram.write(page * PAGE_SIZE + 8 * i, stamp)
        if self.drives:
            disk = self.drives["disk0"]
            disk.pwrite(disk_slot(cpu.steps, disk.length), stamp * 64)

    def expected_disk(self) -> dict[int, bytes]:
        """What the image must hold after every slice so far, wherever each one ran."""
        size = self.drives["disk0"].length
        return {
            disk_slot(step, size): step.to_bytes(8, "little") * 64
            for step in range(1, self.cpus[0].steps + 1)
        }

    def step(self) -> None:
        if self.runstate == "running":
            self.guest_slice()
        for hook in self.hooks:
            hook()


def disk_slot(step: int, disk_size: int) -> int:
    """Where the guest's slice number ``step`` writes its 512-byte stamp: a new 64 KiB
    cluster each time, so a qcow2 image keeps allocating while it migrates."""
    return (step << 16) % disk_size


def run_until(condition: Callable[[], bool], *machines: LoopMachine, timeout: float = 120) -> None:
    """Step the machines in turn until ``condition()``, checked after every single step.

    Checking after each step matters: a destination that took over runs its
    guest on its next step, and tests compare it with the source before that.
    ``timeout`` only catches a hang: generous, for a loaded 2-core machine.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        for machine in machines:
            machine.step()
            if condition():
                return
        time.sleep(0.0005)


@pytest.fixture
def registry() -> Registry:
    return Registry().discover(["block", "migration"])


@pytest.fixture
def make_machine(registry) -> Callable[..., LoopMachine]:
    return lambda ram_size, image, incoming=False, fmt="raw": LoopMachine(
        registry, ram_size, image, incoming=incoming, fmt=fmt
    )


@pytest.fixture(name="run_until")
def run_until_fixture() -> Callable[..., None]:
    return run_until


@pytest.fixture(scope="module")
def guest(request):
    """microvm's built-in migration guest; a test module may set GUEST_ROUNDS."""
    from e2e_support import ROUNDS
    from e2e_support import guest as builtin_guest

    return builtin_guest(getattr(request.module, "GUEST_ROUNDS", ROUNDS))


@pytest.fixture(scope="module")
def reference(guest, tmp_path_factory) -> str:
    """What that guest prints without migration (under QEMU)."""
    from e2e_support import reference_output

    return reference_output(guest, tmp_path_factory.mktemp("reference"))
