"""Local APIC: priorities, EOI, LINT0/ExtINT, IPIs, destinations, the timer, vmstate."""

import pytest
from device_harness import advance, reset_device, save_load

from arctern.errors import StreamError

BASE = 0xFEE00000
TPR, PPR, EOI, LDR, DFR, SVR = 0x80, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0
ISR, TMR, IRR, ESR, ICR_LO, ICR_HI = 0x100, 0x180, 0x200, 0x280, 0x300, 0x310
LVT_TIMER, LVT_LINT0 = 0x320, 0x350
INIT_COUNT, CUR_COUNT, DIVIDE = 0x380, 0x390, 0x3E0
MASKED, PERIODIC = 1 << 16, 1 << 17


class FakePIC:
    def __init__(self, vector):
        self.vector = vector
        self.acks = 0

    def acknowledge(self):
        self.acks += 1
        return self.vector


@pytest.fixture
def apic(machine):
    return reset_device(machine, "apic")


def rd(machine, reg):
    return machine.address_space.read(BASE + reg, 4)


def wr(machine, reg, value):
    machine.address_space.write(BASE + reg, 4, value)


def enable(machine):
    wr(machine, SVR, 0x1FF)


def test_nothing_reaches_the_cpu_until_software_enabled(machine, apic):
    apic.set_irq(0x40, False)
    assert not apic.intr.level and apic.acknowledge() is None
    enable(machine)
    assert apic.intr.level and apic.acknowledge() == 0x40
    assert rd(machine, ISR + 0x20) == 1  # vector 0x40 in service
    assert not apic.intr.level


def test_priority_nesting_and_eoi(machine, apic):
    enable(machine)
    apic.set_irq(0x51, False)
    apic.set_irq(0x62, False)
    assert apic.acknowledge() == 0x62
    assert rd(machine, PPR) == 0x60
    assert not apic.intr.level  # 0x51 is of a lower class than the one in service
    apic.set_irq(0x71, False)
    assert apic.acknowledge() == 0x71  # a higher class nests
    wr(machine, EOI, 0)
    wr(machine, EOI, 0)
    assert apic.acknowledge() == 0x51


def test_tpr_holds_back_a_class_and_acknowledge_gives_the_spurious_vector(machine, apic):
    enable(machine)
    wr(machine, TPR, 0x50)
    apic.set_irq(0x45, False)
    assert rd(machine, PPR) == 0x50 and not apic.intr.level
    assert apic.acknowledge() == 0xFF  # raced with the TPR: spurious, IRR untouched
    assert rd(machine, IRR + 0x20) == 1 << 5
    wr(machine, TPR, 0)
    assert apic.intr.level and apic.acknowledge() == 0x45


def test_eoi_of_a_level_vector_is_broadcast(machine, apic):
    enable(machine)
    seen = []
    apic.eoi_listeners.append(seen.append)
    apic.set_irq(0x30, True)
    apic.set_irq(0x31, False)
    assert rd(machine, TMR + 0x10) == 1 << 16  # 0x30 level, 0x31 edge
    assert apic.acknowledge() == 0x31
    wr(machine, EOI, 0)
    assert apic.acknowledge() == 0x30
    wr(machine, EOI, 0)
    assert seen == [0x30]


def test_pic_through_lint0_masked_at_reset(machine, apic):
    pic = FakePIC(0x24)
    apic.pic_acknowledge = pic.acknowledge
    apic.pic_input(True)
    assert not apic.intr.level and apic.acknowledge() is None
    wr(machine, LVT_LINT0, 0x700)  # ExtINT, unmasked: the PIC's pending INTR arrives
    assert apic.intr.level and apic.acknowledge() == 0x24 and pic.acks == 1
    apic.pic_input(False)
    assert not apic.intr.level
    wr(machine, LVT_LINT0, MASKED | 0x700)
    apic.pic_input(True)
    assert not apic.intr.level and pic.acks == 1


def test_ipis_shorthands_and_destinations(machine, apic):
    enable(machine)
    wr(machine, ICR_LO, (1 << 18) | 0x41)  # self
    wr(machine, ICR_LO, (3 << 18) | 0x42)  # all excluding self
    wr(machine, ICR_HI, 0x01 << 24)
    wr(machine, ICR_LO, 0x43)  # physical APIC 1: nobody
    wr(machine, LDR, 0x02 << 24)
    wr(machine, ICR_HI, 0x06 << 24)
    wr(machine, ICR_LO, (1 << 11) | 0x44)  # logical flat, mask 0x06 includes us
    wr(machine, DFR, 0x0FFFFFFF)  # cluster model: cluster 0, member 2
    wr(machine, ICR_HI, 0x12 << 24)
    wr(machine, ICR_LO, (1 << 11) | 0x45)  # cluster 1: not us
    assert rd(machine, IRR + 0x20) == (1 << 1) | (1 << 4)
    assert rd(machine, ICR_HI) == 0x12 << 24


def test_reserved_register_read_sets_esr_for_good(machine, apic):
    wr(machine, 0x3F0, 1)  # writes to reserved registers are only ignored
    assert rd(machine, ESR) == 0
    assert rd(machine, 0x3F0) == 0
    assert rd(machine, ESR) == 1 << 7
    wr(machine, ESR, 0)
    assert rd(machine, ESR) == 1 << 7  # QEMU 7.2 never clears it


def test_one_shot_timer_counts_virtual_ns_through_the_divider(machine, apic):
    enable(machine)
    wr(machine, DIVIDE, 0x3)  # by 16
    wr(machine, LVT_TIMER, 0x40)
    wr(machine, INIT_COUNT, 1000)
    advance(machine, 8000)
    assert rd(machine, CUR_COUNT) == 500 and not apic.intr.level
    advance(machine, 8016)
    assert rd(machine, CUR_COUNT) == 0 and apic.acknowledge() == 0x40
    wr(machine, EOI, 0)
    advance(machine, 100_000)
    assert not apic.intr.level  # once only


def test_periodic_timer_and_masking(machine, apic):
    enable(machine)
    fired = []
    apic.intr.connect(lambda level: level and fired.append(apic.acknowledge()))
    wr(machine, DIVIDE, 0xB)  # by 1
    wr(machine, LVT_TIMER, PERIODIC | 0x40)
    wr(machine, INIT_COUNT, 999)  # a period of 1000 ns
    for _ in range(10):
        advance(machine, 1000)
        wr(machine, EOI, 0)
    assert fired == [0x40] * 10
    assert 0 < rd(machine, CUR_COUNT) <= 999
    wr(machine, LVT_TIMER, MASKED | PERIODIC | 0x40)
    advance(machine, 5000)
    assert len(fired) == 10  # the counter runs on, but no interrupt


def test_vmstate_round_trip_keeps_vectors_and_the_running_timer(machine, apic):
    enable(machine)
    apic.set_irq(0x90, True)
    apic.set_irq(0x33, False)
    assert apic.acknowledge() == 0x90
    wr(machine, DIVIDE, 0x1)  # by 4
    wr(machine, LVT_TIMER, PERIODIC | 0x40)
    wr(machine, INIT_COUNT, 2499)  # 10 us period
    advance(machine, 3000)
    clone = save_load(machine, apic, "apic")
    assert (clone.isr, clone.irr, clone.tmr) == (apic.isr, apic.irr, apic.tmr)
    assert clone.machine.clock.ns() == machine.clock.ns()
    target = clone.machine
    target.resume()
    assert target.address_space.read(BASE + CUR_COUNT, 4) == rd(machine, CUR_COUNT)
    advance(target, 7000)
    assert clone.irr >> 0x40 & 1  # the timer fired on the destination where it was due


def test_hostile_state_is_refused(machine, apic):
    vmstate = type(apic).vmstate
    data = vmstate.save(apic)
    data["count_shift"] = 9
    clone = machine.create_device("apic", addr=0xFED00000)
    with pytest.raises(StreamError, match="invalid state"):
        vmstate.load(clone, data, 1)
        clone.post_load()


def test_partial_register_accesses_are_ignored_as_in_qemu(machine, apic):
    assert machine.address_space.read(BASE + 0x30, 1) == 0  # the version's low byte
    machine.address_space.write(BASE + TPR, 1, 0x40)
    assert rd(machine, TPR) == 0
