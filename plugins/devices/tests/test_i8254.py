"""8254 PIT against the virtual clock: modes, latch, read-back, IRQ 0 timing, gate, vmstate."""

import pytest
from arctern_devices.i8254 import PIT_FREQ
from device_harness import advance, reset_device, save_load

TICK_NS = 1_000_000_000 / PIT_FREQ


def ns(ticks):
    return int(ticks * TICK_NS) + 1


@pytest.fixture
def pit(machine):
    return reset_device(machine, "i8254")


def program(machine, channel, mode, count, access=3):
    machine.io.write(0x43, 1, channel << 6 | access << 4 | mode << 1)
    if access in (1, 3):
        machine.io.write(0x40 + channel, 1, count & 0xFF)
    if access in (2, 3):
        machine.io.write(0x40 + channel, 1, count >> 8)


def read_count(machine, channel):
    machine.io.write(0x43, 1, channel << 6)  # counter latch
    return machine.io.read(0x40 + channel, 1) | machine.io.read(0x40 + channel, 1) << 8


def test_mode0_interrupt_on_terminal_count(machine, pit):
    irq = machine.gsi(0)
    program(machine, 0, 0, 1000)
    assert not irq.level
    advance(machine, ns(500))
    assert 495 <= read_count(machine, 0) <= 500
    assert not irq.level
    advance(machine, ns(501))
    assert irq.level  # OUT went high at terminal count and stays high
    advance(machine, ns(5000))
    assert irq.level


def test_mode2_rate_generator_fires_periodically(machine, pit):
    edges = []
    irq = machine.gsi(0)
    irq.connect(lambda level: edges.append(level))
    program(machine, 0, 2, 100)
    advance(machine, ns(1050))
    assert edges.count(True) == 10  # one pulse per period of 100 ticks


def test_mode3_square_wave_and_count_down_by_two(machine, pit):
    program(machine, 0, 3, 1000)
    irq = machine.gsi(0)
    assert irq.level
    advance(machine, ns(100))
    assert 795 <= read_count(machine, 0) <= 800  # decrements by two
    advance(machine, ns(450))
    assert not irq.level  # second half period
    advance(machine, ns(500))
    assert irq.level


def test_latch_holds_value_until_read(machine, pit):
    program(machine, 0, 2, 50000)
    machine.io.write(0x43, 1, 0x00)
    advance(machine, ns(10000))
    low, high = machine.io.read(0x40, 1), machine.io.read(0x40, 1)
    assert 49990 <= (low | high << 8) <= 50000
    assert 39990 <= read_count(machine, 0) <= 40001


def test_lobyte_only_and_hibyte_only_access(machine, pit):
    program(machine, 1, 0, 0x80, access=1)
    assert pit.channels[1].count == 0x80
    program(machine, 1, 0, 0x1200, access=2)
    assert pit.channels[1].count == 0x1200
    assert machine.io.read(0x41, 1) == 0x12  # MSB-only read


def test_read_back_status_and_count(machine, pit):
    program(machine, 2, 4, 0x1234)
    machine.io.write(0x43, 1, 0xC0 | 0x08)  # read-back: status and count of channel 2
    status = machine.io.read(0x42, 1)
    assert status & 0x3F == 0x3 << 4 | 4 << 1
    count = machine.io.read(0x42, 1) | machine.io.read(0x42, 1) << 8
    assert count == 0x1234


def test_count_zero_means_65536(machine, pit):
    program(machine, 0, 0, 0)
    assert pit.channels[0].count == 0x10000


def test_port61_gate_restarts_channel2(machine, pit):
    program(machine, 2, 1, 100)  # one-shot: waits for a gate edge
    assert machine.io.read(0x61, 1) & 0x01 == 0
    advance(machine, ns(500))
    machine.io.write(0x61, 1, 0x01)  # gate up: the one-shot restarts
    assert machine.io.read(0x61, 1) & 0x21 == 0x21  # gate up; OUT as QEMU models mode 1
    advance(machine, ns(150))
    assert machine.io.read(0x61, 1) & 0x20 == 0  # the one-shot ended
    first, second = machine.io.read(0x61, 1), machine.io.read(0x61, 1)
    assert (first ^ second) == 0x10  # refresh bit toggles


def test_vmstate_round_trip_keeps_phase(machine, pit):
    program(machine, 0, 2, 1000)
    advance(machine, ns(300))
    before = read_count(machine, 0)
    clone = save_load(machine, pit, "i8254")
    assert clone.channels[0].current_count(machine.clock.ns()) == before
    assert clone.channels[0].next_transition_time == pit.channels[0].next_transition_time
