"""Shared fixtures of the devices tests; ring_driver.py (the scripted guest driver) lives here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from arctern.machine.clock import TimerList, VirtualClock  # noqa: E402
from arctern.machine.irq import IRQLine  # noqa: E402
from arctern.machine.memory import RAM, AddressSpace, IOSpace  # noqa: E402

RAM_SIZE = 16 << 20


class FakeTime:
    """Host time for the virtual clock that moves only when a test says so."""

    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


class StandInMachine:
    """TEMPORARY: the parts of arctern.machine.machine.Machine devices use; replaced by the
    real Machine once it lands."""

    def __init__(self):
        from arctern_devices import plugin

        self._classes = {cls.name: cls for cls in plugin.arctern_devices()}
        self.ram = RAM(RAM_SIZE)
        self.address_space = AddressSpace(self.ram)
        self.io = IOSpace()
        self.host_time = FakeTime()
        self.clock = VirtualClock(self.host_time)
        self.clock.resume()
        self.timers = TimerList(self.clock)
        self._lines = {}
        self.devices, self.buses, self.drives = [], [], {}
        self.exit_request, self.exit_status, self.runstate = False, None, "running"
        self.poll_hooks = []

    def gsi(self, n):
        if n not in self._lines:
            self._lines[n] = IRQLine(f"gsi{n}")
        return self._lines[n]

    def new_timer(self, callback):
        return self.timers.new_timer(callback)

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
    """Let ``ns`` of virtual time pass, running each timer when its deadline comes."""
    end = machine.clock.ns() + ns
    while True:
        deadline = machine.timers.next_deadline()
        if deadline is None or deadline > end:
            break
        machine.host_time.ns += max(0, deadline - machine.clock.ns())
        machine.timers.run_expired()
    machine.host_time.ns += end - machine.clock.ns()


def destination(machine):
    """A second machine as an incoming migration sees it: same RAM, clock and drives."""
    target = new_machine()
    target.ram.data[:] = machine.ram.data
    target.clock.set_state(machine.clock.get_state())
    target.drives = dict(machine.drives)
    return target


def migrate_state(device, clone):
    """Save ``device``'s vmstate, send it through its binary form, load it into ``clone``."""
    vmstate = type(device).vmstate
    data, version = vmstate.decode(vmstate.encode(vmstate.save(device)))
    vmstate.load(clone, data, version)
    clone.post_load()
    return clone


def save_load(machine, device, name, **props):
    """Migrate one device into a new instance on a fresh destination machine."""
    return migrate_state(device, destination(machine).create_device(name, **props))


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
