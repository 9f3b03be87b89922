"""virtio-rng over virtio-mmio, driven by the scripted guest driver: random bytes in the
guest's buffers, QEMU's rate limit on virtual time, migration of waiting buffers."""

import pytest
from arctern_devices.virtio_mmio import CONFIG, DEVICE_ID, QUEUE_NUM_MAX, QUEUE_SEL
from device_harness import advance, destination, migrate_state
from ring_driver import DRIVER_OK, NEEDS_RESET, MMIODriver

from arctern.errors import MachineError

BASE = 0xFEB00000
RING = 0x100000
F_VERSION_1 = 1 << 32
F_EVENT_IDX = 1 << 29
MS = 1_000_000


class Entropy:
    """A guest's view of one virtio-rng device."""

    def __init__(self, machine, version="legacy", features=0, **props):
        self.machine = machine
        legacy = version == "legacy"
        self.mmio = machine.create_device("virtio-mmio", addr=BASE, irq=5, force_legacy=legacy)
        self.dev = machine.create_device("virtio-rng-device", **props)
        self.drv = MMIODriver(machine.address_space, BASE)
        self.ring = self.drv.init(features | (0 if legacy else F_VERSION_1), 8, RING)

    def post(self, *lengths, indirect=False):
        """Make device-writable buffers of ``lengths`` available as one chain and kick."""
        sent = self.ring.add([], list(lengths), indirect=indirect)
        self.drv.kick()
        return sent

    def bytes_of(self, sent):
        return b"".join(self.machine.address_space.read_bytes(a, n) for a, n in sent["in"])


@pytest.mark.parametrize("version", ["legacy", "modern"])
@pytest.mark.parametrize("indirect", [False, True])
def test_buffers_come_back_full_of_random_bytes(machine, version, indirect):
    rng = Entropy(machine, version)
    assert rng.drv.read(DEVICE_ID) == 4
    first = rng.post(64, 200, indirect=indirect)
    second = rng.post(264)
    assert rng.ring.collect() == [(first["head"], 264), (second["head"], 264)]
    data_a, data_b = rng.bytes_of(first), rng.bytes_of(second)
    assert data_a != data_b
    assert len(set(data_a)) > 100  # 264 random bytes hit well over 100 distinct values
    assert bytes(264) not in (data_a, data_b)
    assert rng.drv.ack() & 1  # ISR "used buffer" raised


def test_offers_only_the_transport_features_and_no_config(machine):
    rng = Entropy(machine, "modern")
    common = (1 << 24) | (1 << 28) | (1 << 29) | (1 << 40)
    legacy_only = (1 << 24) | (1 << 27)
    assert rng.drv.device_features() == (common | F_VERSION_1 | (1 << 27)) & ~legacy_only
    rng.drv.write(QUEUE_SEL, 0)
    assert rng.drv.read(QUEUE_NUM_MAX) == 1024
    assert rng.dev.queues[0].num_default == 8  # QEMU's requestq size
    assert rng.drv.read(CONFIG) == 0xFFFFFFFF  # no config space


def test_buffers_posted_before_driver_ok_are_filled_at_driver_ok(machine):
    rng = Entropy(machine)
    status = rng.drv.read(0x70)
    rng.drv.write(0x70, status & ~DRIVER_OK)
    sent = rng.post(32)
    assert rng.ring.collect() == []
    rng.drv.write(0x70, status)
    assert rng.ring.collect() == [(sent["head"], 32)]


def test_event_idx_interrupts_only_when_the_driver_asks(machine):
    rng = Entropy(machine, "modern", features=F_EVENT_IDX)
    rng.post(8)
    assert rng.drv.ack() == 1  # the first completion after reset always interrupts
    rng.ring.set_used_event(3)  # "interrupt me once used index 3 is passed"
    for _ in range(2):
        rng.post(8)
    assert len(rng.ring.collect()) == 3
    assert rng.drv.ack() == 0
    rng.post(8)
    assert rng.drv.ack() == 1


def test_rate_limit_spreads_bytes_over_periods(machine):
    rng = Entropy(machine, max_bytes=16, period=1000)
    first = rng.post(64)
    second = rng.post(8)
    assert rng.ring.collect() == [(first["head"], 16)]  # the period's 16 bytes, then wait
    advance(machine, 999 * MS)
    assert rng.ring.collect() == []
    advance(machine, 1 * MS)
    assert rng.ring.collect() == [(second["head"], 8)]
    third = rng.post(100)
    assert rng.ring.collect() == [(third["head"], 8)]  # what is left of this period


def test_default_rate_limit_is_off(machine):
    rng = Entropy(machine)
    sent = [rng.post(4096) for _ in range(8)]
    assert rng.ring.collect() == [(s["head"], 4096) for s in sent]


def test_waiting_buffer_is_served_after_migration(machine):
    rng = Entropy(machine, max_bytes=4, period=60_000)
    rng.post(4)
    waiting = rng.post(32)
    assert len(rng.ring.collect()) == 1
    target = destination(machine)
    mmio2 = target.create_device("virtio-mmio", addr=BASE, irq=5)
    dev2 = target.create_device("virtio-rng-device", max_bytes=4, period=60_000)
    migrate_state(rng.mmio, mmio2)
    migrate_state(rng.dev, dev2)
    assert dev2.queues[0].last_avail_idx == 1  # the waiting buffer is still the driver's
    target.resume()  # a fresh period on the destination: the buffer gets its 4 bytes
    used = dev2.queues[0]
    assert used.used_idx == 2 and used.last_avail_idx == 2
    entry = target.address_space.read_bytes(rng.ring.used + 4 + 8, 8)
    assert entry == waiting["head"].to_bytes(4, "little") + (4).to_bytes(4, "little")


def test_buffer_outside_ram_breaks_the_device(machine):
    rng = Entropy(machine, "modern")
    rng.ring.write_desc(0, machine.ram.end - 8, 64, 2, 0)  # device-writable, past RAM's end
    rng.ring.free.remove(0)
    rng.ring.publish(0)
    rng.drv.kick()
    assert rng.dev.broken and rng.drv.read(0x70) & NEEDS_RESET
    assert rng.ring.collect() == []


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"period": 0}, "'period' parameter expects a positive integer"),
        ({"max_bytes": 1 << 63}, "'max-bytes' parameter must be non-negative, and less than 2^63"),
        ({"rng": "rng0"}, "Device 'rng0' not found"),
    ],
)
def test_bad_properties_are_refused_as_qemu_does(machine, props, message):
    with pytest.raises(MachineError) as refused:
        machine.create_device("virtio-rng-device", **props)
    assert str(refused.value) == message
