"""virtio-mmio in both versions, driven register by register by a scripted driver."""

import pytest
from arctern_devices.virtio_mmio import (
    CONFIG,
    CONFIG_GENERATION,
    DEVICE_ID,
    INTERRUPT_STATUS,
    QUEUE_AVAIL_LOW,
    QUEUE_DESC_LOW,
    QUEUE_NUM,
    QUEUE_NUM_MAX,
    QUEUE_PFN,
    QUEUE_READY,
    QUEUE_SEL,
    QUEUE_USED_LOW,
    STATUS,
    VENDOR_ID,
    VERSION,
)
from arctern_devices.virtio_mmio import MAGIC_VALUE as MAGIC
from device_harness import destination, migrate_state
from ring_driver import DRIVER_OK, NEEDS_RESET, MMIODriver, Ring

from arctern.errors import MachineError

BASE = 0xFEB00000
RING = 0x100000
SECTOR = 512

LEGACY_FEATURES = sum(1 << b for b in (2, 4, 6, 7, 9, 10, 11, 13, 14, 24, 28, 29))
MODERN_FEATURES = sum(1 << b for b in (2, 4, 6, 9, 10, 11, 13, 14, 28, 29, 32, 40))
EVENT_IDX = 1 << 29


@pytest.fixture(params=["legacy", "modern"])
def version(request):
    return request.param


def transport(machine, version, irq=5):
    props = {"addr": BASE, "irq": irq}
    if version == "modern":
        props["force-legacy"] = False
    return machine.create_device("virtio-mmio", **props)


@pytest.fixture
def blk(machine, version, raw_drive):
    mmio = transport(machine, version)
    dev = machine.create_device("virtio-blk-device", drive=raw_drive)
    return mmio, dev, MMIODriver(machine.address_space, BASE)


def test_empty_transport_identifies_itself(machine, version):
    transport(machine, version)
    drv = MMIODriver(machine.address_space, BASE)
    assert drv.read(MAGIC) == 0x74726976
    assert drv.read(VERSION) == (1 if version == "legacy" else 2)
    assert drv.read(VENDOR_ID) == 0x554D4551
    assert drv.read(DEVICE_ID) == 0
    assert drv.read(QUEUE_NUM_MAX) == 0


def test_reads_past_the_window_are_zero(machine, version):
    transport(machine, version)
    assert machine.address_space.read(BASE + 0x200, 4) == 0


def test_identity_and_features(machine, blk, version):
    _mmio, _dev, drv = blk
    assert drv.read(DEVICE_ID) == 2
    expected = LEGACY_FEATURES if version == "legacy" else MODERN_FEATURES
    assert drv.device_features() == expected
    drv.write(QUEUE_SEL, 0)
    assert drv.read(QUEUE_NUM_MAX) == 1024
    drv.write(QUEUE_SEL, 1)
    assert drv.read(QUEUE_NUM_MAX) == 0


def test_version_specific_registers(machine, blk, version):
    _mmio, _dev, drv = blk
    drv.init(EVENT_IDX if version == "legacy" else EVENT_IDX | 1 << 32, 16, RING)
    if version == "legacy":
        assert drv.read(QUEUE_PFN) == RING >> 12
        assert drv.read(QUEUE_READY) == 0 and drv.read(CONFIG_GENERATION) == 0
    else:
        assert drv.read(QUEUE_READY) == 1 and drv.read(QUEUE_PFN) == 0


def test_config_space(machine, blk, raw_drive):
    _mmio, _dev, drv = blk
    size = machine.drives[raw_drive].length
    assert drv.read(CONFIG, 4) | drv.read(CONFIG + 4, 4) << 32 == size // SECTOR
    assert drv.read(CONFIG + 12) == 254  # seg_max
    assert drv.read(CONFIG + 16, 2) == max(2, size // SECTOR // (16 * 63))  # cylinders
    assert (drv.read(CONFIG + 18, 1), drv.read(CONFIG + 19, 1)) == (16, 63)
    assert drv.read(CONFIG + 20) == 512  # blk_size
    assert drv.read(CONFIG + 32, 1) == 1  # writeback
    assert drv.read(CONFIG + 36) == 4194303  # max_discard_sectors
    assert drv.read(CONFIG + 44) == 1  # discard_sector_alignment
    assert drv.read(CONFIG + 48) == 4194303  # max_write_zeroes_sectors
    assert drv.read(CONFIG + 56, 1) == 1  # write_zeroes_may_unmap
    assert drv.read(CONFIG + 56, 4) == 0xFFFFFFFF  # past the 57-byte config


def test_interrupt_status_ack_and_irq_level(machine, blk):
    _mmio, _dev, drv = blk
    ring = drv.init(0, 16, RING)
    line = machine.gsi(5)
    ring.add([bytes(16)], [SECTOR, 1])  # read sector 0
    drv.kick()
    assert drv.read(INTERRUPT_STATUS) == 1 and line.level
    assert drv.ack() == 1
    assert drv.read(INTERRUPT_STATUS) == 0 and not line.level
    assert len(ring.collect()) == 1


def test_event_idx_suppresses_interrupts(machine, blk):
    _mmio, _dev, drv = blk
    ring = drv.init(EVENT_IDX, 16, RING)
    line = machine.gsi(5)
    ring.set_used_event(2)  # interrupt once the third request is used
    for _ in range(2):
        ring.add([bytes(16)], [SECTOR, 1])
    drv.kick()
    assert line.level  # the first notification is always sent
    drv.ack()
    ring.add([bytes(16)], [SECTOR, 1])
    drv.kick()
    assert line.level and len(ring.collect()) == 3
    drv.ack()
    ring.set_used_event(10)
    ring.add([bytes(16)], [SECTOR, 1])
    drv.kick()
    assert not line.level


def test_hostile_driver_breaks_device_until_reset(machine, blk, version):
    _mmio, dev, drv = blk
    features = 1 << 32 if version == "modern" else 0
    ring = drv.init(features, 16, RING)
    ring.set_avail_idx(100)  # more heads than the ring holds
    drv.kick()
    assert dev.broken
    if version == "modern":
        assert drv.read(STATUS) & NEEDS_RESET
        assert drv.read(INTERRUPT_STATUS) & 2  # config change interrupt
    ring = drv.init(features, 16, RING)  # reset and start over
    assert not dev.broken and drv.read(STATUS) & DRIVER_OK
    ring.add([bytes(16)], [SECTOR, 1])
    drv.kick()
    assert len(ring.collect()) == 1


def test_vmstate_round_trip_mid_queue(machine, blk, version, raw_drive):
    mmio, dev, drv = blk
    ring = drv.init(EVENT_IDX | (1 << 32 if version == "modern" else 0), 16, RING)
    ring.add([bytes(16)], [SECTOR, 1])
    drv.kick()
    ring.add([bytes(16)], [SECTOR, 1])  # published, not yet kicked
    target = destination(machine)
    mmio2 = transport(target, version)
    dev2 = target.create_device("virtio-blk-device", drive=raw_drive)
    migrate_state(mmio, mmio2)
    migrate_state(dev, dev2)
    assert dev2.queues[0].desc == dev.queues[0].desc
    assert dev2.queues[0].last_avail_idx == 1 and dev2.status == dev.status
    assert mmio2.mmio_read(INTERRUPT_STATUS, 4) == 1
    mmio2.mmio_write(0x050, 4, 0)  # kick on the destination
    assert ring.used_idx() == 1  # the copy writes into its own RAM, not ours
    assert dev2.queues[0].used_idx == 2


def test_multiqueue_device(machine, raw_drive):
    transport(machine, "modern")
    dev = machine.create_device("virtio-blk-device", drive=raw_drive, **{"num-queues": 2})
    drv = MMIODriver(machine.address_space, BASE)
    assert drv.device_features() & (1 << 12)  # VIRTIO_BLK_F_MQ
    assert drv.read(CONFIG + 34, 2) == 2  # num_queues
    for sel, maximum in ((1, 1024), (2, 0)):
        drv.write(QUEUE_SEL, sel)
        assert drv.read(QUEUE_NUM_MAX) == maximum
    drv.init(1 << 32, 8, RING)  # sets up queue 0; the second queue is set up by hand
    ring1 = Ring.modern(machine.address_space, 8, RING + 0x10000)
    drv.write(QUEUE_SEL, 1)
    drv.write(QUEUE_NUM, 8)
    for reg, addr in (
        (QUEUE_DESC_LOW, ring1.desc),
        (QUEUE_AVAIL_LOW, ring1.avail),
        (QUEUE_USED_LOW, ring1.used),
    ):
        drv.write(reg, addr)
    drv.write(QUEUE_READY, 1)
    ring1.add([bytes(16)], [512, 1])
    drv.kick(1)
    assert len(ring1.collect()) == 1 and dev.queues[1].used_idx == 1


def test_num_queues_bounds(machine, raw_drive):
    transport(machine, "legacy")
    with pytest.raises(MachineError, match="num-queues property must be larger than 0"):
        machine.create_device("virtio-blk-device", drive=raw_drive, **{"num-queues": 0})
    with pytest.raises(MachineError, match="at most 1024"):
        machine.create_device("virtio-blk-device", drive=raw_drive, **{"num-queues": 1025})
