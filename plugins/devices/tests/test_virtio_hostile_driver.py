"""A driver mixing valid requests with garbage in registers and rings never makes the device
model raise: the device serves what is valid and marks itself broken on the rest."""

import random

import pytest
from ring_driver import MMIODriver

BASE = 0xFEB00000
RING = 0x100000
REGISTERS = [0x014, 0x020, 0x024, 0x028, 0x030, 0x038, 0x03C, 0x040, 0x044, 0x050, 0x064, 0x070]
REGISTERS += [0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4, 0x100, 0x120, 0x1FC]


def garbage(rng):
    return rng.choice([0, 1, 2, 4, 8, 0xFF, 0x1000, 0xFFFF, 0xFFFFFFFF, rng.getrandbits(32)])


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
@pytest.mark.parametrize("seed", range(3))
def test_valid_requests_mixed_with_garbage(machine, raw_drive, legacy, seed):
    rng = random.Random(seed)
    machine.create_device("virtio-mmio", addr=BASE, irq=5, **{"force-legacy": legacy})
    dev = machine.create_device("virtio-blk-device", drive=raw_drive)
    mem = machine.address_space
    drv = MMIODriver(mem, BASE)
    features = (1 << 28) | (1 << 29) | (0 if legacy else 1 << 32)
    ring = drv.init(features, 16, RING)
    completed = broken = 0
    for _ in range(1500):
        action = rng.random()
        if action < 0.45 and len(ring.free) >= 3:
            ring.add([bytes(12) + rng.randbytes(4)], [512, 1], indirect=rng.random() < 0.5)
            drv.kick()
            completed += len(ring.collect())
        elif action < 0.6:
            reg = rng.choice(REGISTERS)
            size = 4 if reg < 0x100 else rng.choice([1, 2, 4])
            mem.write(BASE + reg, size, garbage(rng) & ((1 << (8 * size)) - 1))
        elif action < 0.8:  # scribble over the descriptor table or the avail ring
            target = rng.choice([ring.desc, ring.avail]) + rng.randrange(0, 64, 2)
            mem.write_bytes(target, rng.randbytes(rng.choice([2, 8, 16])))
            drv.kick()
        if dev.broken or action > 0.98 or len(ring.free) < 3:
            broken += dev.broken
            ring = drv.init(features, 16, RING)  # the driver resets and starts over
    assert completed > 100 and broken > 0  # both paths were really exercised
