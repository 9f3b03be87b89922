"""I/O APIC: registers, edge and level delivery, remote IRR and EOI, the pin 0 quirk, vmstate."""

import pytest
from device_harness import save_load

from arctern.errors import MachineError, StreamError

BASE = 0xFEC00000
LEVEL, MASKED, REMOTE_IRR = 1 << 15, 1 << 16, 1 << 14


@pytest.fixture
def ioapic(machine):
    chip = machine.create_device("ioapic", addr=BASE)
    chip.delivered = []
    chip.deliver = lambda *message: chip.delivered.append(message)
    return chip


def read(machine, reg):
    machine.address_space.write(BASE, 4, reg)
    return machine.address_space.read(BASE + 0x10, 4)


def write(machine, reg, value):
    machine.address_space.write(BASE, 4, reg)
    machine.address_space.write(BASE + 0x10, 4, value)


def route(machine, pin, low, dest=0):
    write(machine, 0x11 + 2 * pin, dest << 24)
    write(machine, 0x10 + 2 * pin, low)


def test_reset_registers_as_qemu_7_2(machine, ioapic):
    assert read(machine, 0x00) == 0
    assert read(machine, 0x01) == 0x00170020  # version 0x20, 24 entries
    assert read(machine, 0x02) == 0
    assert all(read(machine, 0x10 + 2 * pin) == MASKED for pin in range(24))
    assert read(machine, 0x03) == read(machine, 0x40) == 0  # no such registers
    machine.address_space.write(BASE, 4, 0x17)
    assert machine.address_space.read(BASE, 4) == 0x17  # IOREGSEL reads back


def test_id_and_read_only_entry_bits(machine, ioapic):
    write(machine, 0x00, 0xFF000000)
    assert read(machine, 0x00) == 0x0F000000
    write(machine, 0x01, 0)
    assert read(machine, 0x01) == 0x00170020
    write(machine, 0x12, 0x0001F7FF)
    write(machine, 0x13, 0xFFFFFFFF)
    assert (read(machine, 0x12), read(machine, 0x13)) == (0x0001A7FF, 0xFFFFFFFF)


def test_edge_delivery_and_masked_edges_are_lost(machine, ioapic):
    route(machine, 5, 0x800 | 0x100 | 0x35, dest=0x03)  # logical, lowest priority
    ioapic.input(5)(True)
    ioapic.input(5)(False)
    assert ioapic.delivered == [(0x03, 1, 1, 0x35, False)]
    ioapic.input(5)(True)
    ioapic.input(5)(True)  # as QEMU's ioapic_set_irq: every assertion of an edge pin counts
    assert len(ioapic.delivered) == 3
    route(machine, 6, MASKED | 0x36)
    ioapic.input(6)(True)
    ioapic.input(6)(False)
    route(machine, 6, 0x36)
    assert all(message[3] != 0x36 for message in ioapic.delivered)


def test_level_remote_irr_and_eoi_redelivery(machine, ioapic):
    route(machine, 9, LEVEL | 0x49)
    ioapic.input(9)(True)
    assert ioapic.delivered == [(0, 0, 0, 0x49, True)]
    assert read(machine, 0x10 + 2 * 9) & REMOTE_IRR
    ioapic.input(9)(True)
    assert len(ioapic.delivered) == 1  # held by the remote IRR
    ioapic.eoi(0x49)  # the line is still high: delivered again
    assert len(ioapic.delivered) == 2
    ioapic.input(9)(False)
    machine.address_space.write(BASE + 0x40, 4, 0x49)  # the version 0x20 EOI register
    assert not read(machine, 0x10 + 2 * 9) & REMOTE_IRR
    assert len(ioapic.delivered) == 2


def test_switching_to_edge_clears_remote_irr(machine, ioapic):
    route(machine, 3, LEVEL | 0x33)
    ioapic.input(3)(True)
    ioapic.input(3)(False)
    route(machine, 3, 0x33)
    assert not read(machine, 0x16) & REMOTE_IRR


def test_input_0_arrives_on_pin_2(machine, ioapic):
    route(machine, 2, 0x22)
    ioapic.input(0)(True)
    assert ioapic.delivered == [(0, 0, 0, 0x22, False)]


def test_vmstate_round_trip_keeps_remote_irr_and_pending_levels(machine, ioapic):
    route(machine, 9, LEVEL | 0x49)
    write(machine, 0x00, 0x05000000)
    ioapic.input(9)(True)
    clone = save_load(machine, ioapic, "ioapic", addr=BASE)
    clone.delivered = []
    clone.deliver = lambda *message: clone.delivered.append(message)
    assert clone.id == 5 and clone.ioredtbl == ioapic.ioredtbl and clone.irr == ioapic.irr
    clone.eoi(0x49)
    assert clone.delivered == [(0, 0, 0, 0x49, True)]


def test_bad_state_and_bad_version(machine, ioapic):
    vmstate = type(ioapic).vmstate
    data = vmstate.save(ioapic)
    data["ioredtbl"] = data["ioredtbl"][:3]
    with pytest.raises(StreamError):
        vmstate.load(ioapic, data, 1)
        ioapic.post_load()
    with pytest.raises(MachineError, match="version"):
        machine.create_device("ioapic", addr=0xFEC10000, version=0x30)
