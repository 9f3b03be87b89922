"""The local xAPIC of one CPU ("apic"), following QEMU 7.2's hw/intc/apic.c and apic_common.c.

MMIO registers at 0xfee00000: ID, version (0x50014), TPR/APR/PPR, EOI, LDR/DFR,
SVR (software enable), ISR/TMR/IRR, ESR, ICR (fixed IPIs to this CPU: the
self, all-including-self and matching-destination forms), the LVT (timer,
thermal, performance, LINT0, LINT1, error), and the timer: divide
configuration, initial and current count, one-shot or periodic. As in QEMU
under TCG the timer counts virtual-clock nanoseconds shifted right by the
divider, so a guest's timing is deterministic under ``-icount``.

The APIC sits between the interrupt controllers and the CPU: the 8259's INTR
arrives on LINT0 (:meth:`LocalAPIC.pic_input`), accepted while LINT0 is
unmasked or the APIC is globally disabled, as QEMU's apic_accept_pic_intr;
I/O APICs deliver with :meth:`LocalAPIC.deliver_irq`. The CPU connects its
INTR input to :attr:`LocalAPIC.intr` and takes vectors from
:meth:`LocalAPIC.acknowledge` (the local vector first, then the PIC's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from arctern.errors import StreamError
from arctern.machine.device import Device, prop_int
from arctern.machine.irq import IRQLine
from arctern.machine.vmstate import VMState, array, boolean, buffer, i64, u8, u32, u64

log = logging.getLogger(__name__)

DEFAULT_BASE = 0xFEE00000
APICBASE_BSP, APICBASE_ENABLE = 1 << 8, 1 << 11
VERSION = 0x14
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = range(6)
LVT_COUNT = 6
LVT_MASKED = 1 << 16
LVT_LEVEL_TRIGGER = 1 << 15
LVT_TIMER_PERIODIC = 1 << 17
DM_FIXED, DM_LOWPRI, DM_EXTINT = 0, 1, 7  # delivery modes (SMI, NMI, INIT, SIPI: not emulated)
SV_ENABLE = 1 << 8
ESR_ILLEGAL_ADDRESS = 1 << 7

#: Registers (offset >> 4) that read back what was written, or a fixed value.
REG_ID, REG_VERSION, REG_TPR, REG_APR, REG_PPR, REG_EOI = 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B
REG_LDR, REG_DFR, REG_SVR = 0x0D, 0x0E, 0x0F
REG_ISR, REG_TMR, REG_IRR = 0x10, 0x18, 0x20
REG_ESR, REG_ICR_LO, REG_ICR_HI, REG_LVT = 0x28, 0x30, 0x31, 0x32
REG_INITIAL_COUNT, REG_CURRENT_COUNT, REG_DIVIDE = 0x38, 0x39, 0x3E


def _highest(bits: int) -> int:
    """The highest set bit of a 256-bit vector set, or -1."""
    return bits.bit_length() - 1


class LocalAPIC(Device):
    """The local APIC of the (single) CPU; ``pic_acknowledge`` reaches the 8259 for ExtINT."""

    name: ClassVar[str] = "apic"
    description: ClassVar[str] = "local xAPIC of CPU 0 (MMIO at 0xfee00000)"
    user_creatable: ClassVar[bool] = False
    properties = {"id": prop_int(0), "addr": prop_int(DEFAULT_BASE)}
    vmstate = VMState(
        "apic",
        1,
        [
            u64("apicbase"),
            u8("apic_id"),
            u8("arb_id"),
            u8("tpr"),
            u32("spurious_vec"),
            u8("log_dest"),
            u8("dest_mode"),
            # 256-bit vector sets, little-endian (bit n of the set is vector n)
            buffer("isr_bytes", length=32),
            buffer("tmr_bytes", length=32),
            buffer("irr_bytes", length=32),
            array("lvt", "u32", LVT_COUNT),
            u32("esr"),
            array("icr", "u32", 2),
            u32("divide_conf"),
            u8("count_shift"),
            u32("initial_count"),
            i64("initial_count_load_time"),
            i64("next_time"),
            boolean("timer_pending"),
            boolean("pic_level"),
        ],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        #: The CPU's interrupt request input.
        self.intr = IRQLine(f"{self.name}.intr")
        #: The 8259's interrupt-acknowledge cycle (None: no PIC on this board).
        self.pic_acknowledge: Callable[[], int] | None = None
        #: Called with a vector at each EOI of a level-triggered interrupt (the I/O APICs).
        self.eoi_listeners: list[Callable[[int], None]] = []
        self.pic_level = False
        self.apicbase = self.props["addr"] | APICBASE_BSP | APICBASE_ENABLE
        self.apic_id = self.props["id"] & 0xFF
        self._timer = None
        self._init_reset()

    def realize(self) -> None:
        self.machine.address_space.add_mmio(self.props["addr"], 0x1000, self, self.name)
        self._timer = self.machine.new_timer(self._timer_expired)

    def reset(self) -> None:
        self.apicbase = self.props["addr"] | APICBASE_BSP | APICBASE_ENABLE
        self.apic_id = self.props["id"] & 0xFF
        self._init_reset()
        if self._timer is not None:
            self._timer.cancel()
        self._update_irq()

    def _init_reset(self) -> None:
        """apic_init_reset: everything but the base and the ID; LINT0 masked like the rest."""
        self.arb_id = 0
        self.tpr = 0
        self.spurious_vec = 0xFF
        self.log_dest = 0
        self.dest_mode = 0xF
        self.isr = self.tmr = self.irr = 0
        self.lvt = [LVT_MASKED] * LVT_COUNT
        self.esr = 0
        self.icr = [0, 0]
        self.divide_conf = 0
        self.count_shift = 0
        self.initial_count = 0
        self.initial_count_load_time = 0
        self.next_time = 0
        self.timer_pending = False

    # --- migration: vector sets as bytes, the timer re-armed -----------------------

    isr_bytes = property(lambda self: _to_bytes(self.isr), lambda self, v: _load(self, "isr", v))
    tmr_bytes = property(lambda self: _to_bytes(self.tmr), lambda self, v: _load(self, "tmr", v))
    irr_bytes = property(lambda self: _to_bytes(self.irr), lambda self, v: _load(self, "irr", v))

    def post_load(self) -> None:
        if self.count_shift > 7 or len(self.lvt) != LVT_COUNT or len(self.icr) != 2:
            raise StreamError(f"{self.name}: invalid state (count shift {self.count_shift})")
        if self._timer is not None:
            if self.timer_pending:
                self._timer.mod(self.next_time)
            else:
                self._timer.cancel()
        self._update_irq()

    @property
    def _now(self) -> int:
        return self.machine.clock.ns()

    # --- interrupt logic (apic.c) ------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Globally enabled (IA32_APIC_BASE bit 11)."""
        return bool(self.apicbase & APICBASE_ENABLE)

    def _ppr(self) -> int:
        isrv = max(_highest(self.isr), 0) >> 4
        return self.tpr if self.tpr >> 4 >= isrv else isrv << 4

    def _irq_pending(self) -> int:
        """The vector to deliver (>0), 0 if none, -1 if the priority holds it back."""
        if not self.spurious_vec & SV_ENABLE:
            return 0
        irrv = _highest(self.irr)
        if irrv < 0:
            return 0
        ppr = self._ppr()
        if ppr and irrv & 0xF0 <= ppr & 0xF0:
            return -1
        return irrv

    def accepts_pic(self) -> bool:
        """apic_accept_pic_intr: the 8259 reaches the CPU through an unmasked LINT0."""
        return self.pic_acknowledge is not None and (
            not self.enabled or not self.lvt[LVT_LINT0] & LVT_MASKED
        )

    def _update_irq(self) -> None:
        self.intr.set(self._irq_pending() > 0 or (self.accepts_pic() and self.pic_level))

    def set_irq(self, vector: int, level_triggered: bool) -> None:
        """Accept ``vector`` into the IRR (TMR records level triggering)."""
        bit = 1 << vector
        self.irr |= bit
        self.tmr = self.tmr | bit if level_triggered else self.tmr & ~bit
        self._update_irq()

    def acknowledge(self) -> int | None:
        """The CPU takes an interrupt: this APIC's best vector, else the PIC's (ExtINT)."""
        if self.enabled and self.spurious_vec & SV_ENABLE:
            vector = self._irq_pending()
            if vector < 0:
                return self.spurious_vec & 0xFF
            if vector > 0:
                bit = 1 << vector
                self.irr &= ~bit
                self.isr |= bit
                self._update_irq()
                return vector
        if self.accepts_pic() and self.pic_level:
            return self.pic_acknowledge()
        return None

    def _eoi(self) -> None:
        isrv = _highest(self.isr)
        if isrv < 0:
            return
        self.isr &= ~(1 << isrv)
        if self.tmr >> isrv & 1:
            for listener in self.eoi_listeners:
                listener(isrv)
        self._update_irq()

    def _local_deliver(self, index: int) -> None:
        lvt = self.lvt[index]
        if lvt & LVT_MASKED:
            return
        mode = (lvt >> 8) & 7
        if mode == DM_FIXED:
            level = index in (LVT_LINT0, LVT_LINT1) and bool(lvt & LVT_LEVEL_TRIGGER)
            self.set_irq(lvt & 0xFF, level)
        elif mode == DM_EXTINT:
            self._update_irq()
        else:
            log.warning("apic: LVT %d delivery mode %d is not emulated", index, mode)

    def pic_input(self, level: bool) -> None:
        """The 8259's INTR output, wired to LINT0 (QEMU's pic_irq_request)."""
        self.pic_level = bool(level)
        if not self.accepts_pic():
            return
        if level:
            self._local_deliver(LVT_LINT0)
            return
        lvt = self.lvt[LVT_LINT0]
        if (lvt >> 8) & 7 == DM_FIXED and lvt & LVT_LEVEL_TRIGGER:
            self.irr &= ~(1 << (lvt & 0xFF))
        self._update_irq()

    def matches(self, dest: int, dest_mode: int) -> bool:
        """Whether an interrupt for ``dest`` (physical 0 / logical 1 mode) reaches this APIC."""
        if dest_mode == 0:
            return dest == 0xFF or dest == self.apic_id
        if self.dest_mode == 0xF:  # flat model
            return bool(dest & self.log_dest)
        return dest & 0xF0 == self.log_dest & 0xF0 and bool(dest & self.log_dest & 0x0F)

    def deliver_irq(
        self, dest: int, dest_mode: int, delivery_mode: int, vector: int, level: bool
    ) -> None:
        """An interrupt message (from an I/O APIC or an IPI)."""
        if not self.matches(dest, dest_mode):
            return
        if delivery_mode in (DM_FIXED, DM_LOWPRI):
            self.set_irq(vector, level)
        elif delivery_mode == DM_EXTINT:
            self._update_irq()
        else:
            log.warning("apic: delivery mode %d (vector %#x) not emulated", delivery_mode, vector)

    def _send_ipi(self) -> None:
        low, high = self.icr
        shorthand = (low >> 18) & 3
        if shorthand == 3:  # all excluding self: no other CPU
            return
        dest, dest_mode = (high >> 24, (low >> 11) & 1) if shorthand == 0 else (self.apic_id, 0)
        self.deliver_irq(dest, dest_mode, (low >> 8) & 7, low & 0xFF, bool(low >> 15 & 1))

    # --- the timer -------------------------------------------------------------------

    def _current_count(self) -> int:
        d = (self._now - self.initial_count_load_time) >> self.count_shift
        if self.lvt[LVT_TIMER] & LVT_TIMER_PERIODIC:
            return self.initial_count - d % (self.initial_count + 1)
        return 0 if d >= self.initial_count else self.initial_count - d

    def _timer_update(self, now: int) -> None:
        """Arm the timer for the next count-to-zero after ``now`` (apic_next_timer)."""
        d = (now - self.initial_count_load_time) >> self.count_shift
        period = self.initial_count + 1
        if self.lvt[LVT_TIMER] & LVT_TIMER_PERIODIC and self.initial_count:
            d = (d // period + 1) * period
        elif not self.lvt[LVT_TIMER] & LVT_TIMER_PERIODIC and d < self.initial_count:
            d = period
        else:
            self.timer_pending = False
            if self._timer is not None:
                self._timer.cancel()
            return
        self.next_time = self.initial_count_load_time + (d << self.count_shift)
        self.timer_pending = True
        if self._timer is not None:
            self._timer.mod(self.next_time)

    def _end_slice(self) -> None:
        """The guest armed the timer: end the CPU slice, sized for the old next deadline,
        so the main loop sizes the next one to this timer (QEMU kicks the CPU likewise)."""
        self.machine.exit_request = True

    def _timer_expired(self) -> None:
        self._local_deliver(LVT_TIMER)
        # Periods the main loop could not run in time are merged into this one (the IRR
        # bit would have merged them anyway), so a tiny period cannot starve the guest.
        self._timer_update(max(self.next_time, self._now))

    # --- registers ---------------------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> int:
        if size < 4:
            return 0  # as QEMU: only whole registers are read (and written)
        return self._read_reg(offset >> 4)

    def _read_reg(self, index: int) -> int:
        if index == REG_ID:
            return self.apic_id << 24
        if index == REG_VERSION:
            return VERSION | (LVT_COUNT - 1) << 16
        if index == REG_TPR:
            return self.tpr
        if index == REG_APR:
            return 0
        if index == REG_PPR:
            return self._ppr()
        if index == REG_EOI:
            return 0
        if index == REG_LDR:
            return self.log_dest << 24
        if index == REG_DFR:
            return self.dest_mode << 28 | 0x0FFFFFFF
        if index == REG_SVR:
            return self.spurious_vec
        for base, bits in ((REG_ISR, self.isr), (REG_TMR, self.tmr), (REG_IRR, self.irr)):
            if base <= index < base + 8:
                return (bits >> ((index - base) * 32)) & 0xFFFFFFFF
        if index == REG_ESR:
            return self.esr
        if index in (REG_ICR_LO, REG_ICR_HI):
            return self.icr[index - REG_ICR_LO]
        if REG_LVT <= index < REG_LVT + LVT_COUNT:
            return self.lvt[index - REG_LVT]
        if index == REG_INITIAL_COUNT:
            return self.initial_count
        if index == REG_CURRENT_COUNT:
            return self._current_count()
        if index == REG_DIVIDE:
            return self.divide_conf
        log.warning("apic: read of reserved register %#x", index << 4)
        self.esr |= ESR_ILLEGAL_ADDRESS
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if size < 4:
            return
        index = offset >> 4
        value &= 0xFFFFFFFF
        if index == REG_ID:
            self.apic_id = value >> 24
        elif index == REG_TPR:
            self.tpr = value & 0xFF
            self._update_irq()
        elif index == REG_EOI:
            self._eoi()
        elif index == REG_LDR:
            self.log_dest = value >> 24
        elif index == REG_DFR:
            self.dest_mode = value >> 28
        elif index == REG_SVR:
            self.spurious_vec = value & 0x1FF
            self._update_irq()
        elif index == REG_ICR_LO:
            self.icr[0] = value
            self._send_ipi()
        elif index == REG_ICR_HI:
            self.icr[1] = value
        elif REG_LVT <= index < REG_LVT + LVT_COUNT:
            self._write_lvt(index - REG_LVT, value)
        elif index == REG_INITIAL_COUNT:
            self.initial_count = value
            self.initial_count_load_time = self._now
            self._timer_update(self.initial_count_load_time)
            self._end_slice()
        elif index == REG_DIVIDE:
            self.divide_conf = value & 0xB
            v = (value & 3) | ((value >> 1) & 4)
            self.count_shift = (v + 1) & 7
        elif index not in (REG_VERSION, REG_APR, REG_PPR, REG_ESR, REG_CURRENT_COUNT) and not (
            REG_ISR <= index < REG_IRR + 8
        ):
            # As QEMU 7.2: ignored, and unlike a read it does not set ESR (nor does
            # writing ESR clear it).
            log.warning("apic: write to reserved register %#x", index << 4)

    def _write_lvt(self, n: int, value: int) -> None:
        self.lvt[n] = value
        if n == LVT_TIMER:
            self._timer_update(self._now)
            self._end_slice()
        elif n == LVT_LINT0:
            if self.accepts_pic() and self.pic_level:
                self._local_deliver(LVT_LINT0)
            self._update_irq()


def _to_bytes(bits: int) -> bytes:
    return bits.to_bytes(32, "little")


def _load(apic: LocalAPIC, attr: str, data: bytes) -> None:
    setattr(apic, attr, int.from_bytes(data, "little"))
