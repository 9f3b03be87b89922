"""Shared fixtures of the devices tests; ring_driver.py (the scripted guest driver) lives here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import standin_machine  # noqa: E402

STANDIN = standin_machine.install()

from arctern.machine.memory import RAM, AddressSpace, IOSpace  # noqa: E402

RAM_SIZE = 16 << 20


class _Timer:
    def __init__(self, machine, callback):
        self.machine, self.callback, self.deadline = machine, callback, None

    def mod(self, deadline):
        self.deadline = deadline

    def cancel(self):
        self.deadline = None

    @property
    def pending(self):
        return self.deadline is not None


class StandInMachine:
    def __init__(self):
        from arctern_devices import plugin

        from arctern.machine.clock import VirtualClock
        from arctern.machine.irq import IRQLine

        self._classes = {cls.name: cls for cls in plugin.arctern_devices()}
        self.ram = RAM(RAM_SIZE)
        self.address_space = AddressSpace(self.ram)
        self.io = IOSpace()
        self.clock = VirtualClock()
        self._lines = {}
        self._irqline = IRQLine
        self.timers = []
        self.devices, self.buses, self.drives = [], [], {}
        self.exit_request, self.exit_status, self.runstate = False, None, "running"
        self.poll_hooks = []

    def gsi(self, n):
        if n not in self._lines:
            self._lines[n] = self._irqline(f"gsi{n}")
        return self._lines[n]

    def new_timer(self, callback):
        timer = _Timer(self, callback)
        self.timers.append(timer)
        return timer

    def create_device(self, name, **props):
        dev = self._classes[name](self, **props)
        dev.realize()
        if dev.bus_type:
            bus = next(b for b in self.buses if b.type == dev.bus_type and b.device is None)
            bus.plug(dev)
        self.devices.append(dev)
        dev.reset()
        return dev

    def request_exit(self, status):
        self.exit_request, self.exit_status = True, status

    def pause(self, reason="paused"):
        self.runstate = reason

    def add_poll_hook(self, callback):
        self.poll_hooks.append(callback)


def new_machine():
    return StandInMachine()


@pytest.fixture
def machine():
    m = new_machine()
    yield m
    for dev in m.devices:
        dev.unrealize()
    for backend in m.drives.values():
        backend.close()


def advance(machine, ns):
    """Let ``ns`` of virtual time pass, firing due timers in deadline order."""
    end = machine.clock.now + ns
    while True:
        due = [t for t in machine.timers if t.deadline is not None and t.deadline <= end]
        if not due:
            break
        timer = min(due, key=lambda t: t.deadline)
        machine.clock.now = max(machine.clock.now, timer.deadline)
        timer.deadline = None
        timer.callback()
    machine.clock.now = end


def save_load(machine, device, name, target=None, **props):
    """Migrate ``device``'s state into a new instance on ``target`` (a fresh machine by default)."""
    if target is None:
        target = new_machine()
        target.ram.data[:] = machine.ram.data
        target.clock.now = machine.clock.now
        target.drives = dict(machine.drives)
    vmstate = type(device).vmstate
    blob = vmstate.encode(vmstate.save(device))
    clone = target.create_device(name, **props)
    data, version = type(vmstate).decode(blob)
    vmstate.load(clone, data, version)
    clone.post_load()
    return clone


def open_drive(machine, path, fmt, read_only=False, drive_id=None):
    from arctern.block.image import open_image

    drive_id = drive_id or f"drive{len(machine.drives)}"
    machine.drives[drive_id] = open_image(str(path), fmt=fmt, read_only=read_only)
    return drive_id


@pytest.fixture
def raw_drive(machine, tmp_path):
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.truncate(8 << 20)
    return open_drive(machine, path, "raw")
