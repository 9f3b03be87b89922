"""Device.vm_state_changed: the machine tells its devices when it starts and stops running.

As QEMU's VM change state handlers: devices start in creation order after the
machine is announced as running (QMP's RESUME), and stop in reverse order
before it is announced as stopped (STOP).
"""

from __future__ import annotations

import types
from typing import ClassVar

import pytest

from arctern.hookspecs import hookimpl
from arctern.machine.device import Device, prop_str
from arctern.machine.machine import Machine
from arctern.testing.machine import BareBoard, device_registry


class Listener(Device):
    """Writes what it hears into the shared log; ``pause_on_run`` pauses the machine then."""

    name: ClassVar[str] = "test-listener"
    properties = {"pause_on_run": prop_str(None)}

    def realize(self):
        """Nothing to attach."""

    def reset(self):
        """No state."""

    def vm_state_changed(self, running):
        self.machine.log.append((self.id, running))
        if running and self.props["pause_on_run"]:
            self.machine.pause(self.props["pause_on_run"])


class Quiet(Device):
    """A device that does not implement vm_state_changed (the default does nothing)."""

    name: ClassVar[str] = "test-quiet"

    def realize(self):
        """Nothing to attach."""

    def reset(self):
        """No state."""


@pytest.fixture
def machine():
    registry = device_registry(Listener, Quiet)
    machine = Machine(BareBoard(), registry=registry, ram_size=1 << 20)
    machine.log = []
    observer = types.SimpleNamespace(
        arctern_guest_state_changed=hookimpl(
            lambda machine, running, reason: machine.log.append((reason, running))
        )
    )
    registry.pm.register(observer)
    return machine


def test_devices_start_in_creation_order_and_stop_in_reverse(machine):
    for id in ("a", "b"):
        machine.create_device("test-listener", id=id)
    machine.create_device("test-quiet")
    machine.resume()
    machine.pause()
    assert machine.log == [
        ("running", True),
        ("a", True),
        ("b", True),
        ("b", False),
        ("a", False),
        ("paused", False),
    ]


def test_a_shutdown_stops_the_devices(machine):
    machine.create_device("test-listener", id="a")
    machine.resume()
    machine.request_exit(0)
    assert machine.log[-2:] == [("a", False), ("shutdown", False)]


def test_a_device_that_stops_the_machine_again_ends_the_start(machine):
    machine.create_device("test-listener", id="a")
    machine.create_device("test-listener", id="b", pause_on_run="io-error")
    machine.create_device("test-listener", id="c")
    machine.resume()
    # c never hears of the start b undid, only of the stop (every device hears a stop)
    assert machine.log == [
        ("running", True),
        ("a", True),
        ("b", True),
        ("c", False),
        ("b", False),
        ("a", False),
        ("io-error", False),
    ]
    assert machine.runstate == "io-error"
