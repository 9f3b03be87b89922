"""The virtio device contract on its own: what any transport sees of any VirtioDevice.

A small device and a stand-in transport (the VirtioTransport protocol, no
registers) exercise feature negotiation, status, the config space, the ISR,
virtio_error and the migration of the common state, with no plugin loaded.
"""

import struct
from types import SimpleNamespace

import pytest

from arctern.errors import StreamError
from arctern.machine.device import prop_int
from arctern.machine.memory import RAM, AddressSpace
from arctern.machine.vmstate import VMState, copy_states, u16
from arctern.testing.virtio import Ring
from arctern.virtio import VIRTIO_FIELDS, VirtioBus, VirtioDevice, bit, sg_write
from arctern.virtio.spec import (
    F_ANY_LAYOUT,
    F_NOTIFY_ON_EMPTY,
    F_RING_EVENT_IDX,
    F_RING_INDIRECT_DESC,
    F_VERSION_1,
    ISR_CONFIG,
    ISR_QUEUE,
    STATUS_DRIVER_OK,
    STATUS_FEATURES_OK,
    STATUS_NEEDS_RESET,
)

F_DEVICE = 3


class Transport:
    """The transport's side of the protocol, counting interrupt updates."""

    def __init__(self, legacy):
        self.legacy = legacy
        self.irq_updates = 0
        self.plugged = None

    def update_irq(self):
        self.irq_updates += 1

    def device_plugged(self, device):
        self.plugged = device
        device.plugged(self)

    def device_unplugged(self):
        self.plugged.unplugged()
        self.plugged = None


class Zeroes(VirtioDevice):
    """Fills the driver's buffers with zeroes; 8 bytes of config, the last 4 writable."""

    name = "test-zeroes"
    device_id = 99
    vmstate = VMState("test-zeroes", 1, [*VIRTIO_FIELDS, u16("knob")])

    def __init__(self, machine, **props):
        self.knob = 0
        super().__init__(machine, **props)

    def realize(self):
        """Nothing to attach."""

    def queue_config(self):
        return (8, 0, 4)  # queue 1 does not exist

    def device_features(self):
        return bit(F_DEVICE)

    def get_config(self):
        return struct.pack("<II", 0xABCD, self.knob)

    def set_config(self, config):
        self.knob = struct.unpack_from("<I", config, 4)[0] & 0xFFFF

    def handle_queue(self, vq):
        while (elem := vq.pop()) is not None:
            vq.push(elem, sg_write(self.machine.address_space, elem.in_sg, bytes(elem.in_len)))
        self.notify(vq)


def make(legacy=False):
    ram = RAM(1 << 20)
    machine = SimpleNamespace(ram=ram, address_space=AddressSpace(ram))
    device = Zeroes(machine)
    transport = Transport(legacy)
    VirtioBus(transport, "virtio-bus.0").plug(device)
    return device, transport


def test_plugging_through_the_bus_tells_the_transport_and_the_device():
    device, transport = make()
    assert transport.plugged is device and device.transport is transport
    assert device.parent_bus.type == "virtio-bus"
    device.parent_bus.unplug()
    assert transport.plugged is None and device.transport is None


@pytest.mark.parametrize("legacy", [True, False])
def test_offered_features_are_the_device_s_the_common_ones_and_the_transport_s(legacy):
    device, _ = make(legacy)
    features = device.host_features
    assert features & bit(F_DEVICE) and features & bit(F_RING_EVENT_IDX)
    assert features & bit(F_NOTIFY_ON_EMPTY) and features & bit(F_ANY_LAYOUT)
    assert bool(features & bit(F_VERSION_1)) is not legacy


def test_driver_features_are_cut_to_the_offer_and_frozen_by_features_ok():
    device, _ = make()
    device.set_features(bit(F_DEVICE) | bit(F_VERSION_1) | bit(50))
    assert device.guest_features == bit(F_DEVICE) | bit(F_VERSION_1)
    device.set_status(STATUS_FEATURES_OK)
    device.set_features(bit(F_RING_EVENT_IDX))
    assert not device.has_feature(F_RING_EVENT_IDX)


def test_event_idx_negotiation_reaches_the_queues():
    device, _ = make()
    device.set_features(bit(F_RING_EVENT_IDX))
    assert all(vq.event_idx for vq in device.queues)
    device.reset()
    assert not any(vq.event_idx for vq in device.queues) and device.guest_features == 0


def test_missing_queue_and_queue_range():
    device, _ = make()
    assert device.queue(0) is device.queues[0]
    assert device.queue(1) is None and device.queue(3) is None and device.queue(-1) is None
    device.queue_sel = 2
    assert device.selected_queue() is device.queues[2]
    device.queue_sel = 1
    assert device.selected_queue() is None


def test_config_space_reads_writes_and_out_of_range():
    device, _ = make()
    assert device.config_read(0, 4) == 0xABCD
    assert device.config_read(1, 1) == 0xAB
    device.config_write(4, 2, 0x1234)
    assert device.knob == 0x1234 and device.config_read(4, 4) == 0x1234
    assert device.config_read(6, 4) == 0xFFFFFFFF  # crosses the end: all ones
    device.config_write(8, 4, 1)  # past the end: ignored
    assert device.knob == 0x1234


def test_notify_config_only_once_the_driver_is_ready():
    device, transport = make()
    device.notify_config()
    assert device.isr == 0 and device.config_generation == 0
    device.set_status(STATUS_DRIVER_OK)
    device.notify_config()
    assert device.isr == ISR_QUEUE | ISR_CONFIG and device.config_generation == 1  # QEMU's 3
    assert transport.irq_updates >= 1
    device.ack_interrupt(ISR_QUEUE | ISR_CONFIG)
    assert device.isr == 0


def ready_queue(device, index=0):
    vq = device.queues[index]
    ring = Ring.modern(device.machine.address_space, vq.num, 0x10000)
    vq.set_rings(ring.desc, ring.avail, ring.used)
    return vq, ring


def test_notify_queue_serves_and_interrupts():
    device, _ = make()
    device.set_status(STATUS_DRIVER_OK)
    _, ring = ready_queue(device)
    sent = ring.add([], [16])
    device.notify_queue(0)
    assert ring.collect() == [(sent["head"], 16)]
    assert device.isr == ISR_QUEUE


def test_a_broken_ring_stops_the_device_until_reset():
    device, _ = make()
    device.set_features(bit(F_VERSION_1))
    device.set_status(STATUS_FEATURES_OK | STATUS_DRIVER_OK)
    _, ring = ready_queue(device)
    ring.set_avail_idx(100)  # the driver claims 100 new buffers in a ring of 8
    device.notify_queue(0)
    assert device.broken and device.status & STATUS_NEEDS_RESET and device.isr & ISR_CONFIG
    ring.set_avail_idx(0)
    ring.add([], [4])
    device.notify_queue(0)
    assert ring.collect() == []  # broken: nothing served
    device.reset()
    assert not device.broken and device.status == 0


def test_a_legacy_driver_breaking_the_ring_gets_no_needs_reset():
    device, _ = make(legacy=True)
    device.set_status(STATUS_DRIVER_OK)
    _, ring = ready_queue(device)
    ring.set_avail_idx(100)
    device.notify_queue(0)
    assert device.broken and not device.status & STATUS_NEEDS_RESET


def test_common_state_migrates_into_the_live_queues():
    device, _ = make()
    device.set_features(bit(F_RING_EVENT_IDX) | bit(F_VERSION_1))
    device.set_status(STATUS_FEATURES_OK | STATUS_DRIVER_OK)
    vq, ring = ready_queue(device)
    ring.add([], [8])
    device.notify_queue(0)
    device.knob = 7
    data, version = Zeroes.vmstate.decode(Zeroes.vmstate.encode(Zeroes.vmstate.save(device)))
    clone, _ = make()
    live_queues = list(clone.queues)
    Zeroes.vmstate.load(clone, data, version)
    clone.post_load()
    assert clone.queues == live_queues  # the same objects, wired to guest memory
    assert (clone.queues[0].desc, clone.queues[0].used_idx) == (vq.desc, 1)
    assert clone.queues[0].event_idx and clone.knob == 7 and clone.status == device.status


def test_hostile_queue_state_is_a_stream_error():
    device, _ = make()
    data = Zeroes.vmstate.save(device)
    data["queue_state"][0]["num"] = 4096
    with pytest.raises(StreamError, match="queue size 4096"):
        Zeroes.vmstate.load(make()[0], data, 1)
    data["queue_state"][0]["num"] = 8
    data["queue_state"].pop()
    with pytest.raises(StreamError, match="state has 2 virtqueue entries, this device has 3"):
        Zeroes.vmstate.load(make()[0], data, 1)


def test_copy_states_refuses_a_count_mismatch():
    state = VMState("pair", 1, [u16("a")])
    targets = [SimpleNamespace(a=0), SimpleNamespace(a=0)]
    copy_states("dev", targets, [SimpleNamespace(a=1), SimpleNamespace(a=2)], state)
    assert [t.a for t in targets] == [1, 2]
    with pytest.raises(StreamError, match="dev: state has 1 pair entries"):
        copy_states("dev", targets, [SimpleNamespace(a=1)], state)


def test_common_feature_properties_withdraw_features():
    ram = RAM(1 << 20)
    machine = SimpleNamespace(ram=ram, address_space=AddressSpace(ram))
    device = Zeroes(machine, event_idx=False, indirect_desc="off")
    assert not device.host_features & (bit(F_RING_EVENT_IDX) | bit(F_RING_INDIRECT_DESC))
    assert device.host_features & bit(F_DEVICE)


def test_a_subclass_s_properties_add_to_its_parents():
    class Tunable(Zeroes):
        name = "test-tunable"
        properties = {"depth": prop_int(3)}

    assert {"event_idx", "queue_reset", "depth"} <= set(Tunable.properties)
    assert "depth" not in Zeroes.properties
