"""The MC146818 real-time clock and CMOS RAM ("mc146818"), after QEMU 7.2's hw/rtc/mc146818rtc.c.

Index port 0x70, data port 0x71, IRQ 8. The time registers (seconds to year,
and the century at 0x32, also seen at 0x37) read in BCD or binary and in 12-
or 24-hour format as register B says; register A holds the divider and the periodic rate and
shows update-in-progress during the last 244 us of each second; register C
reports the periodic, alarm and update-ended interrupts (reading it clears
them and lowers the IRQ); register D reads 0x80 (valid RAM and time). The
other 114 bytes are CMOS RAM the board may fill (microvm stores the memory
size there, as QEMU does).

Time is kept as QEMU keeps it: the guest's RTC seconds (``base_rtc``) at a
virtual-clock instant (``last_update``) plus a sub-second ``offset``. It
starts from the host's UTC time and then advances with the machine's virtual
clock only, so it stands still while the guest is paused and carries over a
migration unchanged.
"""

from __future__ import annotations

import calendar
import time
from typing import Any, ClassVar

from arctern.errors import StreamError
from arctern.machine.device import Device, prop_int
from arctern.machine.vmstate import VMState, buffer, i64, u8

NS_PER_SEC = 1_000_000_000
RTC_HZ = 32768
UIP_HOLD_NS = 8 * NS_PER_SEC // RTC_HZ
CMOS_SIZE = 128
#: The range of times the registers can show (years 1 to 9999).
MIN_SECONDS = calendar.timegm((1, 1, 1, 0, 0, 0))
MAX_SECONDS = calendar.timegm((9999, 12, 31, 23, 59, 59))

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = range(6)
DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 10, 11, 12, 13
CENTURY, PS2_CENTURY = 0x32, 0x37
TIME_REGS = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR, CENTURY)

REG_A_UIP = 0x80
REG_B_SET, REG_B_PIE, REG_B_AIE, REG_B_UIE = 0x80, 0x40, 0x20, 0x10
REG_B_SQWE, REG_B_DM, REG_B_24H = 0x08, 0x04, 0x02
REG_C_IRQF, REG_C_PF, REG_C_AF, REG_C_UF = 0x80, 0x40, 0x20, 0x10
REG_C_MASK = 0x70
REG_D_VRT = 0x80
ALARM_DONT_CARE = 0xC0


class MC146818(Device):
    """The ISA RTC at ``iobase`` (0x70) on ISA IRQ ``irq`` (8)."""

    name: ClassVar[str] = "mc146818"
    description: ClassVar[str] = "MC146818 real-time clock and CMOS RAM (ports 0x70-0x71)"
    user_creatable: ClassVar[bool] = False
    properties = {"iobase": prop_int(0x70), "irq": prop_int(8), "base_year": prop_int(2000)}
    vmstate = VMState(
        "mc146818rtc",
        1,
        [
            buffer("cmos", length=CMOS_SIZE),
            u8("index"),
            i64("base_rtc"),
            i64("last_update"),
            i64("offset"),
            i64("periodic_deadline"),
            i64("update_deadline"),
        ],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.cmos = bytearray(CMOS_SIZE)
        self.cmos[REG_A] = 0x26
        self.cmos[REG_B] = REG_B_24H
        self.cmos[REG_D] = REG_D_VRT
        self.index = 0
        self.base_rtc = 0
        self.last_update = 0
        self.offset = 0
        #: Virtual-clock deadlines of the two timers (-1: not armed), migrated with them.
        self.periodic_deadline = -1
        self.update_deadline = -1
        self.irq = None
        self._periodic_timer = None
        self._update_timer = None

    def realize(self) -> None:
        machine = self.machine
        machine.io.add(self.props["iobase"], 2, self, self.name)
        self.irq = machine.gsi(self.props["irq"])
        self._periodic_timer = machine.new_timer(self._periodic_expired)
        self._update_timer = machine.new_timer(self._update_expired)
        self.set_time(time.time_ns() // NS_PER_SEC)

    def reset(self) -> None:
        """As QEMU: register B loses PIE, AIE and SQWE, C its flags; the time runs on."""
        self.cmos[REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_SQWE)
        self.cmos[REG_C] &= ~(REG_C_UF | REG_C_IRQF | REG_C_PF | REG_C_AF)
        self.irq.lower()
        self._periodic_update()
        self._check_update_timer()

    def post_load(self) -> None:
        if self.index >= CMOS_SIZE:
            raise StreamError(f"{self.name}: invalid CMOS index {self.index}")
        if not MIN_SECONDS <= self._guest_ns() // NS_PER_SEC <= MAX_SECONDS:
            raise StreamError(f"{self.name}: clock state out of range (base {self.base_rtc})")
        for timer, deadline in (
            (self._periodic_timer, self.periodic_deadline),
            (self._update_timer, self.update_deadline),
        ):
            if deadline >= 0:
                timer.mod(deadline)
            else:
                timer.cancel()
        self.irq.set(bool(self.cmos[REG_C] & REG_C_IRQF))

    # --- the board's side --------------------------------------------------------

    def set_time(self, seconds: int) -> None:
        """Set the clock to ``seconds`` since the epoch (UTC), as at power-on."""
        self.base_rtc = seconds
        self.last_update = self._now
        self.offset = 0
        self._store_time(seconds)

    def set_cmos(self, index: int, value: int) -> None:
        """A byte of CMOS RAM (rtc_set_memory)."""
        self.cmos[index] = value & 0xFF

    # --- time keeping ---------------------------------------------------------------

    @property
    def _now(self) -> int:
        return self.machine.clock.ns()

    def _running(self) -> bool:
        return not self.cmos[REG_B] & REG_B_SET and self.cmos[REG_A] & 0x70 <= 0x20

    def _guest_ns(self) -> int:
        return self.base_rtc * NS_PER_SEC + self._now - self.last_update + self.offset

    def _to_bcd(self, value: int) -> int:
        return value if self.cmos[REG_B] & REG_B_DM else (value // 10) << 4 | value % 10

    def _from_bcd(self, value: int) -> int:
        return value if self.cmos[REG_B] & REG_B_DM else (value >> 4) * 10 + (value & 0x0F)

    def _store_time(self, seconds: int) -> None:
        """rtc_set_cmos: the time registers in the current format."""
        tm = time.gmtime(seconds)
        cmos, bcd = self.cmos, self._to_bcd
        cmos[SECONDS] = bcd(tm.tm_sec)
        cmos[MINUTES] = bcd(tm.tm_min)
        if self.cmos[REG_B] & REG_B_24H:
            cmos[HOURS] = bcd(tm.tm_hour)
        else:
            cmos[HOURS] = bcd(tm.tm_hour % 12 or 12) | (0x80 if tm.tm_hour >= 12 else 0)
        cmos[DAY_OF_WEEK] = bcd((tm.tm_wday + 1) % 7 + 1)  # Sunday is 1
        cmos[DAY_OF_MONTH] = bcd(tm.tm_mday)
        cmos[MONTH] = bcd(tm.tm_mon)
        year = tm.tm_year - self.props["base_year"]
        cmos[YEAR] = bcd(year % 100)
        cmos[CENTURY] = bcd((year // 100 + self.props["base_year"] // 100) % 100)

    def _cmos_seconds(self) -> int:
        """rtc_get_time: the time registers as seconds since the epoch."""
        cmos, num = self.cmos, self._from_bcd
        hour = num(cmos[HOURS] & 0x7F)
        if not cmos[REG_B] & REG_B_24H:
            hour = hour % 12 + (12 if cmos[HOURS] & 0x80 else 0)
        month = num(cmos[MONTH]) - 1
        year = num(cmos[YEAR]) + num(cmos[CENTURY]) * 100 + month // 12
        # Out-of-range (non-BCD) values wrap as the arithmetic goes; the year stays in range.
        year = min(max(year, 1), 9999)
        midnight = calendar.timegm((year, month % 12 + 1, 1, 0, 0, 0))
        days = num(cmos[DAY_OF_MONTH]) - 1
        return midnight + days * 86400 + hour * 3600 + num(cmos[MINUTES]) * 60 + num(cmos[SECONDS])

    def _update_time(self) -> None:
        self._store_time(self._guest_ns() // NS_PER_SEC)

    def _set_time_from_cmos(self) -> None:
        self.base_rtc = self._cmos_seconds()
        self.last_update = self._now

    def _update_in_progress(self) -> bool:
        if not self._running():
            return False
        deadline = self.update_deadline
        if deadline >= 0 and self._now >= deadline - UIP_HOLD_NS:
            return True
        return self._guest_ns() % NS_PER_SEC >= NS_PER_SEC - UIP_HOLD_NS

    # --- interrupts ------------------------------------------------------------------------

    def _raise(self, flags: int) -> None:
        """Set interrupt flags in register C; IRQF and the line follow newly enabled ones."""
        new = flags & ~self.cmos[REG_C]
        self.cmos[REG_C] |= flags
        if new & self.cmos[REG_B]:
            self.cmos[REG_C] |= REG_C_IRQF
            self.irq.raise_()

    def _periodic_update(self, now: int | None = None) -> None:
        """Arm the periodic timer on the next edge of the rate in register A."""
        rate = self.cmos[REG_A] & 0x0F
        if not rate or not self.cmos[REG_B] & REG_B_PIE:
            self.periodic_deadline = -1
            self._periodic_timer.cancel()
            return
        if rate <= 2:
            rate += 7
        period = 1 << (rate - 1)  # in 32 kHz cycles
        now = self._now if now is None else now
        cycles = now * RTC_HZ // NS_PER_SEC
        next_cycle = (cycles & ~(period - 1)) + period
        self.periodic_deadline = next_cycle * NS_PER_SEC // RTC_HZ + 1
        self._periodic_timer.mod(self.periodic_deadline)

    def _periodic_expired(self) -> None:
        self._periodic_update(self.periodic_deadline)
        self._raise(REG_C_PF)

    def _check_update_timer(self) -> None:
        """Arm the update timer for the next second while UF or AF can still change."""
        cmos = self.cmos
        idle = cmos[REG_C] & REG_C_UF and (cmos[REG_B] & REG_B_SET or cmos[REG_C] & REG_C_AF)
        if cmos[REG_A] & 0x60 == 0x60 or idle:
            self.update_deadline = -1
            self._update_timer.cancel()
            return
        deadline = self._now + NS_PER_SEC - self._guest_ns() % NS_PER_SEC
        if deadline != self.update_deadline:
            self.update_deadline = deadline
            self._update_timer.mod(deadline)

    def _alarm_matches(self) -> bool:
        cmos = self.cmos
        return all(
            cmos[alarm] & ALARM_DONT_CARE == ALARM_DONT_CARE or cmos[alarm] == cmos[now]
            for alarm, now in (
                (SECONDS_ALARM, SECONDS),
                (MINUTES_ALARM, MINUTES),
                (HOURS_ALARM, HOURS),
            )
        )

    def _update_expired(self) -> None:
        self.update_deadline = -1
        flags = REG_C_UF
        if self._running():
            self._update_time()
            if self._alarm_matches():
                flags |= REG_C_AF
        self._raise(flags)
        self._check_update_timer()

    # --- ports ---------------------------------------------------------------------------------

    def _register(self) -> int:
        """The selected register: 0x37, the IBM PS/2 century byte, is 0x32 (as QEMU)."""
        return CENTURY if self.index == PS2_CENTURY else self.index

    def port_read(self, port: int, size: int) -> int:
        if (port - self.props["iobase"]) & 1 == 0:
            return 0xFF
        index, cmos = self._register(), self.cmos
        if index in TIME_REGS:
            if self._running():
                self._update_time()
            return cmos[index]
        if index == REG_A:
            return cmos[REG_A] | REG_A_UIP if self._update_in_progress() else cmos[REG_A]
        if index == REG_C:
            value = cmos[REG_C]
            self.irq.lower()
            cmos[REG_C] = 0
            if value & (REG_C_UF | REG_C_AF):
                self._check_update_timer()
            return value
        return cmos[index]

    def port_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if (port - self.props["iobase"]) & 1 == 0:
            self.index = value & 0x7F
            return
        index, cmos = self._register(), self.cmos
        if index in TIME_REGS or index in (SECONDS_ALARM, MINUTES_ALARM, HOURS_ALARM):
            cmos[index] = value
            if index in TIME_REGS and self._running():
                self._set_time_from_cmos()
            self._check_update_timer()
        elif index in (REG_A, REG_B):
            (self._write_a if index == REG_A else self._write_b)(value)
            # Timers may have moved: end the CPU slice, sized for the old next deadline.
            self.machine.exit_request = True
        elif index not in (REG_C, REG_D):
            cmos[index] = value

    def _write_a(self, value: int) -> None:
        cmos = self.cmos
        if value & 0x60 == 0x60:  # divider chain reset: the time stops
            if self._running():
                self._update_time()
        elif cmos[REG_A] & 0x60 == 0x60 and value & 0x70 <= 0x20:
            # Out of divider reset: the first update comes half a second later.
            if not cmos[REG_B] & REG_B_SET:
                self.offset = NS_PER_SEC // 2
                self._set_time_from_cmos()
        cmos[REG_A] = value & ~REG_A_UIP  # UIP is computed when read
        self._periodic_update()
        self._check_update_timer()

    def _write_b(self, value: int) -> None:
        """Register B. Time registers change format at their next read (regenerated)."""
        cmos = self.cmos
        if value & REG_B_SET:
            if self._running():
                self._update_time()
            value &= ~REG_B_UIE
        elif cmos[REG_B] & REG_B_SET and cmos[REG_A] & 0x70 <= 0x20:
            # Leaving set mode: the registers (in the old format) become the time.
            self.offset = self._guest_ns() % NS_PER_SEC
            self._set_time_from_cmos()
        if value & cmos[REG_C] & REG_C_MASK:
            cmos[REG_C] |= REG_C_IRQF
            self.irq.raise_()
        else:
            cmos[REG_C] &= ~REG_C_IRQF
            self.irq.lower()
        cmos[REG_B] = value
        self._periodic_update()
        self._check_update_timer()
