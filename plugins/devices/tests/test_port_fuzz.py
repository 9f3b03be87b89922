"""Random port I/O on the UART, the PIC pair and the PIT never raises; the PIT works after."""

import random

import pytest
from device_harness import advance

from arctern.machine.chardev import MemoryChardev

PORTS = [*range(0x3F8, 0x400), 0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, *range(0x40, 0x44), 0x61]


@pytest.mark.parametrize("seed", range(3))
def test_random_port_io(machine, seed):
    rng = random.Random(seed)
    chardev = MemoryChardev()
    machine.add_serial(chardev)
    pic = machine.create_device("pic-pair")
    for n in range(16):
        machine.gsi(n).connect(pic.input(n))
    machine.create_device("isa-serial", chardev="serial0")
    machine.create_device("i8254")
    for device in machine.devices:
        device.reset()
    for _ in range(5000):
        action = rng.random()
        port = rng.choice(PORTS)
        if action < 0.5:
            machine.io.write(port, 1, rng.getrandbits(8))
        elif action < 0.8:
            assert 0 <= machine.io.read(port, 1) <= 0xFF
        elif action < 0.9:
            advance(machine, rng.randrange(1, 5_000_000))
        elif action < 0.95:
            chardev.feed(rng.randbytes(rng.randrange(1, 40)))
            chardev.poll()
        else:
            assert 0 <= pic.acknowledge() <= 0xFF
    # The PIT still works: a rate generator on channel 0 arms its timer again.
    for port, value in ((0x43, 0x34), (0x40, 100), (0x40, 0)):
        machine.io.write(port, 1, value)
    assert machine.timers.next_deadline() is not None


@pytest.mark.parametrize("seed", range(3))
def test_random_apic_ioapic_and_rtc_accesses(machine, seed):
    """Guest writes of anything anywhere to the interrupt controllers and the RTC never raise."""
    rng = random.Random(seed)
    lapic = machine.create_device("apic")
    ioapic = machine.create_device("ioapic")
    ioapic.deliver = lapic.deliver_irq
    lapic.eoi_listeners.append(ioapic.eoi)
    machine.create_device("mc146818")
    machine.gsi(8).connect(ioapic.input(8))
    for device in machine.devices:
        device.reset()
    space = machine.address_space
    for _ in range(5000):
        action = rng.random()
        if action < 0.3:
            space.write(0xFEE00000 + rng.randrange(0, 0x400, 4), 4, rng.getrandbits(32))
        elif action < 0.45:
            space.write(0xFEC00000 + rng.choice((0, 0x10, 0x40)), 4, rng.getrandbits(32))
        elif action < 0.6:
            machine.io.write(rng.choice((0x70, 0x71)), 1, rng.getrandbits(8))
        elif action < 0.8:
            assert 0 <= space.read(0xFEE00000 + rng.randrange(0, 0x400, 4), 4) <= 0xFFFFFFFF
            assert 0 <= machine.io.read(0x71, 1) <= 0xFF
        elif action < 0.9:
            advance(machine, rng.randrange(1, 50_000_000))
        else:
            vector = lapic.acknowledge()
            assert vector is None or 0 <= vector <= 0xFF
