"""8259A pair: initialisation, priorities, EOI variants, edge/level, spurious IRQs, vmstate."""

import pytest
from device_harness import save_load


class Intr:
    """Records the PIC's INTR output like a CPU's interrupt pin."""

    def __init__(self):
        self.level = False

    def __call__(self, level):
        self.level = bool(level)


@pytest.fixture
def pic(machine):
    pair = machine.create_device("pic-pair")
    pair.cpu = Intr()
    pair.intr.connect(pair.cpu)
    io = machine.io
    # The BIOS/Linux programming: master vectors 0x20, slave 0x28, cascade on IRQ 2, 8086 mode.
    for port, icws in ((0x20, (0x11, 0x20, 0x04, 0x01)), (0xA0, (0x11, 0x28, 0x02, 0x01))):
        io.write(port, 1, icws[0])
        for icw in icws[1:]:
            io.write(port + 1, 1, icw)
    return pair


def eoi(machine, irq):
    if irq >= 8:
        machine.io.write(0xA0, 1, 0x20)
    machine.io.write(0x20, 1, 0x20)


def pulse(pic, irq):
    pic.input(irq)(True)
    pic.input(irq)(False)


def test_priority_and_nesting(machine, pic):
    pulse(pic, 3)
    pulse(pic, 1)
    assert pic.cpu.level
    assert pic.acknowledge() == 0x21  # IRQ 1 beats IRQ 3
    assert machine.io.read(0x20, 1) == 0x08  # IRR after ack: IRQ 3 still requested
    assert not pic.cpu.level  # IRQ 3 has lower priority than the one in service
    pulse(pic, 0)
    assert pic.cpu.level and pic.acknowledge() == 0x20  # nests above IRQ 1
    machine.io.write(0x20, 1, 0x0B)  # OCW3: read ISR
    assert machine.io.read(0x20, 1) == 0x03
    eoi(machine, 0)
    assert not pic.cpu.level
    eoi(machine, 1)
    assert pic.cpu.level and pic.acknowledge() == 0x23


def test_slave_interrupt_and_cascade_eoi(machine, pic):
    pulse(pic, 10)
    assert pic.cpu.level and pic.acknowledge() == 0x2A
    pulse(pic, 12)
    assert not pic.cpu.level  # the cascade input is still in service on the master
    eoi(machine, 10)
    assert pic.cpu.level and pic.acknowledge() == 0x2C


def test_mask_register(machine, pic):
    machine.io.write(0x21, 1, 0xFF & ~0x04)
    pulse(pic, 4)
    assert not pic.cpu.level
    assert machine.io.read(0x21, 1) == 0xFB
    machine.io.write(0x21, 1, 0x00)
    assert pic.cpu.level and pic.acknowledge() == 0x24


def test_level_triggered_spurious_master_and_slave(machine, pic):
    machine.io.write(0x4D0, 1, 0xFF)
    machine.io.write(0x4D1, 1, 0xFF)
    assert machine.io.read(0x4D0, 1) == 0xF8  # IRQs 0-2 are edge only
    assert machine.io.read(0x4D1, 1) == 0xDE  # IRQs 8 and 13 are edge only
    pic.input(5)(True)
    assert pic.cpu.level
    pic.input(5)(False)  # the device dropped its request before the CPU acknowledged
    assert pic.acknowledge() == 0x27  # spurious IRQ 7
    pic.input(11)(True)
    pic.input(11)(False)  # master latched the cascade edge, the slave has nothing
    assert pic.acknowledge() == 0x2F  # spurious IRQ 15


def test_level_request_survives_acknowledge_until_line_drops(machine, pic):
    machine.io.write(0x4D0, 1, 0x20)
    pic.input(5)(True)
    assert pic.acknowledge() == 0x25
    eoi(machine, 5)
    assert pic.cpu.level  # still asserted: interrupts again
    pic.input(5)(False)
    assert not pic.cpu.level


def test_edge_needs_a_new_rising_edge(machine, pic):
    pic.input(6)(True)
    assert pic.acknowledge() == 0x26
    eoi(machine, 6)
    pic.input(6)(True)  # still high: no new edge
    assert not pic.cpu.level


def test_auto_eoi_and_rotation(machine, pic):
    io = machine.io
    for value in (0x11, 0x20, 0x04, 0x03):  # ICW4 with auto-EOI
        io.write(0x20 if value == 0x11 else 0x21, 1, value)
    pulse(pic, 3)
    assert pic.acknowledge() == 0x23
    io.write(0x20, 1, 0x0B)
    assert io.read(0x20, 1) == 0  # nothing in service with auto-EOI
    io.write(0x20, 1, 0xC4)  # OCW2 set priority: IRQ 4 lowest, so IRQ 5 highest
    pulse(pic, 1)
    pulse(pic, 6)
    assert pic.acknowledge() == 0x26


def test_rotate_on_non_specific_eoi(machine, pic):
    pulse(pic, 1)
    pulse(pic, 3)
    assert pic.acknowledge() == 0x21
    machine.io.write(0x20, 1, 0xA0)  # rotate on non-specific EOI: IRQ 1 becomes lowest
    pulse(pic, 1)
    assert pic.acknowledge() == 0x23


def test_special_mask_mode_allows_lower_priority(machine, pic):
    pulse(pic, 1)
    assert pic.acknowledge() == 0x21
    machine.io.write(0x21, 1, 0x02)  # mask the in-service IRQ 1
    machine.io.write(0x20, 1, 0x68)  # OCW3: set special mask
    pulse(pic, 5)
    assert pic.cpu.level and pic.acknowledge() == 0x25


def test_poll_command(machine, pic):
    pulse(pic, 4)
    machine.io.write(0x20, 1, 0x0C)  # OCW3 poll
    assert machine.io.read(0x20, 1) == 0x84
    machine.io.write(0x20, 1, 0x0B)
    assert machine.io.read(0x20, 1) == 0x10  # polled IRQ is in service


def test_vmstate_round_trip_with_interrupt_in_service(machine, pic):
    pulse(pic, 3)
    pulse(pic, 7)
    assert pic.acknowledge() == 0x23
    clone = save_load(machine, pic.master, "i8259")
    assert (clone.irr, clone.isr, clone.imr, clone.irq_base) == (0x80, 0x08, 0, 0x20)
    clone.port_write(0x20, 1, 0x20)  # EOI on the copy
    assert clone.acknowledge() == 0x27
