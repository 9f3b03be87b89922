"""The devices tests' harness: a real Machine on a bare board with a test-driven clock,
virtual time, migration of device state, drives. (Named uniquely: several test
directories put their folder on sys.path, so a plain ``conftest`` import is ambiguous.)"""

from arctern.machine.clock import TimerList, VirtualClock
from arctern.machine.machine import Machine
from arctern.plugins import Registry
from arctern.testing.machine import BareBoard

RAM_SIZE = 16 << 20


class FakeTime:
    """Host time for the virtual clock that moves only when a test says so."""

    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


_registry = None


def new_machine(*, running=True):
    """A real Machine with this plugin's devices and a virtual clock driven by the test."""
    global _registry
    if _registry is None:
        _registry = Registry(strict=False).discover(["device"])
    machine = Machine(BareBoard(), registry=_registry, ram_size=RAM_SIZE)
    machine.host_time = FakeTime()
    machine.clock = VirtualClock(machine.host_time)
    machine.timers = TimerList(machine.clock)
    if running:
        machine.resume()
    return machine


def reset_device(machine, name, **props):
    """Device ``name`` created on ``machine`` and reset, as at power-on."""
    device = machine.create_device(name, **props)
    device.reset()
    return device


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
    target = new_machine(running=False)  # incoming: runs once the state is loaded
    target.ram.data[:] = machine.ram.data
    target.clock.set_state(machine.clock.get_state())
    target.drives = dict(machine.drives)  # shared storage: the same open images
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
