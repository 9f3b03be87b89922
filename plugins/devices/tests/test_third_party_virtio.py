"""A virtio device written outside this plugin, on the core API alone, driven end to end by
this plugin's virtio-mmio transport: registration, features, config space, requests,
interrupts, reset and migration. The guest side is the testing kit's driver, as a
third-party author's tests would use it."""

import struct

import pytest
from device_harness import BareBoard, migrate_state

from arctern.hookspecs import hookimpl
from arctern.machine.device import prop_int
from arctern.machine.machine import Machine
from arctern.machine.vmstate import VMState, u32
from arctern.plugins import Registry
from arctern.testing.virtio import MMIODriver
from arctern.virtio import VIRTIO_FIELDS, SplitVirtqueue, VirtioDevice, bit, sg_read, sg_write
from arctern.virtio.spec import STATUS_DRIVER_OK

BASE = 0xFEB00000
RING = 0x100000
CONFIG = 0x100
F_UPPER = 0
F_VERSION_1 = 1 << 32


class EchoDevice(VirtioDevice):
    """Echoes what the driver sends into its writable buffers (upper-cased with F_UPPER).

    Config space: ``echoed`` (u32, read-only: bytes echoed so far), ``tag`` (u32, read-write).
    """

    name = "test-virtio-echo"
    description = "virtio echo device of a third party"
    device_id = 42
    properties = {"queue-size": prop_int(16)}
    vmstate = VMState("test-virtio-echo", 1, [*VIRTIO_FIELDS, u32("echoed"), u32("tag")])

    def __init__(self, machine, *, id=None, **props):
        super().__init__(machine, id=id, **props)
        self.echoed = self.tag = 0

    def realize(self):
        """Nothing to attach: the transport does the wiring."""

    def reset(self):
        self.echoed = 0
        super().reset()

    def queue_config(self):
        return (self.props["queue-size"],)

    def device_features(self):
        return bit(F_UPPER)

    def get_config(self):
        return struct.pack("<II", self.echoed, self.tag)

    def set_config(self, config):
        self.tag = struct.unpack_from("<I", config, 4)[0]

    def handle_queue(self, vq: SplitVirtqueue):
        mem = self.machine.address_space
        while (elem := vq.pop()) is not None:
            data = sg_read(mem, elem.out_sg)
            if self.has_feature(F_UPPER):
                data = data.upper()
            written = sg_write(mem, elem.in_sg, data)
            self.echoed += written
            vq.push(elem, written)
        self.notify(vq)


class ThirdPartyPlugin:
    @hookimpl
    def arctern_devices(self):
        return [EchoDevice]


@pytest.fixture
def registry():
    registry = Registry(strict=True).discover(["device"])
    record = registry.register_plugin(
        ThirdPartyPlugin(), kind="device", name="echo", distribution="third-party-echo"
    )
    assert record.provides == ["test-virtio-echo"]
    return registry


def echo_machine(registry, version, running=True):
    machine = Machine(BareBoard(), registry=registry, ram_size=16 << 20)
    mmio = machine.create_device("virtio-mmio", addr=BASE, irq=5, force_legacy=version == "legacy")
    device = machine.create_device("test-virtio-echo")
    if running:
        machine.resume()
    return machine, mmio, device


def request(drv, ring, data, in_len):
    sent = ring.add([data], [in_len])
    drv.kick()
    [(head, written)] = ring.collect()
    assert head == sent["head"]
    ring.release(sent)
    return drv.mem.read_bytes(sent["in"][0][0], written)


@pytest.mark.parametrize("version", ["legacy", "modern"])
def test_transport_drives_a_device_it_does_not_know(registry, version):
    machine, mmio, device = echo_machine(registry, version)
    assert device.parent_bus is mmio.bus and mmio.vdev is device
    drv = MMIODriver(machine.address_space, BASE)
    assert drv.read(0x008) == 42  # DeviceID
    assert drv.device_features() & bit(F_UPPER)
    features = bit(F_UPPER) | (0 if version == "legacy" else F_VERSION_1)
    ring = drv.init(features, 16, RING)
    assert device.has_feature(F_UPPER) and drv.read(0x070) & STATUS_DRIVER_OK

    assert request(drv, ring, b"hello, virtio", 64) == b"HELLO, VIRTIO"
    assert request(drv, ring, b"truncated", 5) == b"TRUNC"
    assert drv.ack() == 1  # the used-buffer interrupt reached the transport's ISR

    drv.write(CONFIG + 4, 0xC0FFEE)
    assert (drv.read(CONFIG), drv.read(CONFIG + 4)) == (18, 0xC0FFEE)
    assert drv.read(CONFIG + 8) == 0xFFFFFFFF  # past the device's config space

    drv.write(0x070, 0)  # the driver resets the device through the transport
    assert device.status == 0 and device.echoed == 0 and not device.guest_features
    machine.close()


def test_device_state_migrates_with_the_transport(registry):
    machine, mmio, device = echo_machine(registry, "modern")
    drv = MMIODriver(machine.address_space, BASE)
    ring = drv.init(F_VERSION_1, 16, RING)
    drv.write(CONFIG + 4, 7)
    assert request(drv, ring, b"before", 16) == b"before"

    target, mmio2, device2 = echo_machine(registry, "modern", running=False)
    target.ram.data[:] = machine.ram.data  # what RAM migration delivers
    migrate_state(mmio, mmio2)
    migrate_state(device, device2)
    target.resume()
    assert (device2.echoed, device2.tag, device2.status) == (6, 7, device.status)

    ring.mem = target.address_space  # the guest's driver continues on the destination
    assert request(MMIODriver(target.address_space, BASE), ring, b"after", 16) == b"after"
    assert device2.queues[0].used_idx == 2
    for m in (machine, target):
        m.close()


def test_run_state_changes_reach_the_device_once_each(registry, monkeypatch):
    """The machine tells the device itself; with this plugin loaded it must not hear twice."""
    machine, _mmio, device = echo_machine(registry, "legacy", running=False)
    heard = []
    monkeypatch.setattr(device, "vm_state_changed", heard.append)
    machine.resume()
    machine.pause("io-error")
    machine.resume()
    machine.reset()  # no run-state change
    assert heard == [True, False, True]
