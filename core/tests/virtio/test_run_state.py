"""Run-state changes reach virtio devices through the core, whatever their transport.

The transport here is written in the test (a Device offering a VirtioBus, with
no register file: the test plays the driver through the device's driver-side
calls) and the registry holds only this test's plugin, so nothing of
arctern-devices is involved: the machine itself tells the device when it starts
and stops running.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from arctern.machine.device import Device
from arctern.machine.machine import Machine
from arctern.machine.vmstate import VMState
from arctern.testing.machine import BareBoard, device_registry
from arctern.testing.virtio import Ring
from arctern.virtio import VIRTIO_FIELDS, VirtioBus, VirtioDevice, sg_write
from arctern.virtio.spec import ISR_QUEUE, STATUS_DRIVER_OK

RING_BASE = 0x10000


class BareTransport(Device):
    """A transport without registers: its interrupt line is a level the test reads."""

    name: ClassVar[str] = "test-bare-transport"
    user_creatable: ClassVar[bool] = False
    legacy = False

    def __init__(self, machine, **props):
        super().__init__(machine, **props)
        self.vdev: VirtioDevice | None = None
        self.irq_level = False
        self.bus = VirtioBus(self, "test-virtio-bus.0")

    def realize(self):
        self.machine.add_bus(self.bus)

    def reset(self):
        if self.vdev is not None:
            self.vdev.reset()

    def update_irq(self):
        self.irq_level = self.vdev is not None and self.vdev.isr != 0

    def device_plugged(self, device):
        self.vdev = device
        device.plugged(self)

    def device_unplugged(self):
        self.vdev.unplugged()
        self.vdev = None


class Deferring(VirtioDevice):
    """Fills buffers with 0xAA, but only while the machine runs (as a device whose
    backend stops with the machine); what waited is served when it runs again."""

    name: ClassVar[str] = "test-deferring-device"
    device_id: ClassVar[int] = 98
    vmstate = VMState("test-deferring", 1, [*VIRTIO_FIELDS])

    def __init__(self, machine, **props):
        super().__init__(machine, **props)
        self.heard: list[bool] = []

    def realize(self):
        """Nothing to attach: the transport does the wiring."""

    def queue_config(self):
        return (8,)

    def handle_queue(self, vq):
        if not self.machine.running:
            return
        while (elem := vq.pop()) is not None:
            vq.push(elem, sg_write(self.machine.address_space, elem.in_sg, b"\xaa" * elem.in_len))
        self.notify(vq)

    def vm_state_changed(self, running):
        self.heard.append(running)
        if running:
            self.handle_queue(self.queues[0])


@pytest.fixture
def machine():
    registry = device_registry(BareTransport, Deferring)
    assert set(registry.devices) == {"test-bare-transport", "test-deferring-device"}
    machine = Machine(BareBoard(), registry=registry, ram_size=1 << 20)
    machine.create_device("test-bare-transport")
    machine.create_device("test-deferring-device")
    return machine


def driver_ring(machine):
    """The driver's side: DRIVER_OK and queue 0 set up at RING_BASE."""
    device = machine.find_device("test-deferring-device")[0]
    vq = device.queues[0]
    ring = Ring.modern(machine.address_space, vq.num, RING_BASE)
    vq.set_rings(ring.desc, ring.avail, ring.used)
    device.set_status(STATUS_DRIVER_OK)
    return device, ring


def test_a_request_made_while_stopped_is_served_when_the_machine_runs(machine):
    device, ring = driver_ring(machine)
    transport = device.transport
    sent = ring.add([], [32])
    device.notify_queue(0)
    assert ring.collect() == [] and not transport.irq_level  # prelaunch: nothing served

    machine.resume()
    assert device.heard == [True]
    assert ring.collect() == [(sent["head"], 32)]
    assert machine.address_space.read_bytes(sent["in"][0][0], 32) == b"\xaa" * 32
    assert device.isr == ISR_QUEUE and transport.irq_level


def test_every_change_is_heard_once(machine):
    device, _ring = driver_ring(machine)
    machine.resume()
    machine.pause("io-error")
    machine.resume()
    machine.resume()  # already running: no change
    machine.request_exit(0)
    assert device.heard == [True, False, True, False]


def test_a_reset_is_no_run_state_change(machine):
    device, _ring = driver_ring(machine)
    machine.resume()
    machine.reset()
    assert device.heard == [True] and device.status == 0
