"""The 8254 programmable interval timer ("i8254"), following QEMU's hw/timer/i8254.c.

Three channels counting at 1.193182 MHz of the machine's virtual clock (so a
paused or migrated guest sees no jump), modes 0-5, lobyte/hibyte/word access,
counter latch and the read-back command. The counters are not ticked: a
channel remembers when its count was loaded and derives count and OUT from
the virtual time, as QEMU does. Channel 0's OUT drives an IRQ line through a
virtual-clock timer set to the next OUT transition. Port 0x61 (property
``gate-port``; 0 disables it) exposes channel 2's gate and OUT as on the PC.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

from arctern.errors import StreamError
from arctern.machine.device import Device, prop_int
from arctern.machine.vmstate import (
    VMState,
    boolean,
    copy_states,
    i64,
    struct_list,
    u8,
    u16,
    u32,
)

PIT_FREQ = 1193182
NS_PER_SEC = 1_000_000_000

RW_LSB, RW_MSB, RW_WORD0, RW_WORD1 = 1, 2, 3, 4


def _ticks(ns: int) -> int:
    return ns * PIT_FREQ // NS_PER_SEC


def _ns(ticks: int) -> int:
    return ticks * NS_PER_SEC // PIT_FREQ


class PITChannel:
    """One counter: its programming and when its count was loaded (virtual ns)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.reset(0)

    def reset(self, now: int) -> None:
        self.count = 0x10000
        self.latched_count = 0
        self.count_latched = 0
        self.status_latched = False
        self.status = 0
        self.read_state = 0
        self.write_state = 0
        self.write_latch = 0
        self.rw_mode = 0
        self.mode = 3
        self.bcd = False
        self.gate = self.index != 2
        self.count_load_time = now
        self.next_transition_time = -1

    def out(self, now: int) -> bool:
        d = _ticks(now - self.count_load_time)
        count, mode = self.count, self.mode
        if mode == 0 or mode > 5:  # QEMU treats the undefined modes 6 and 7 as mode 0 here
            return d >= count
        if mode == 1:
            return d < count
        if mode == 2:
            return d % count == 0 and d != 0
        if mode == 3:
            return d % count < (count + 1) >> 1
        return d == count  # modes 4 and 5

    def next_transition(self, now: int) -> int:
        """Virtual time of the next OUT change after ``now``, or -1 if none."""
        d = _ticks(now - self.count_load_time)
        count, mode = self.count, self.mode
        if mode in (0, 1) or mode > 5:
            if d >= count:
                return -1
            nxt = count
        elif mode == 2:
            base = d // count * count
            nxt = base + count if d - base == 0 and d != 0 else base + count + 1
        elif mode == 3:
            base = d // count * count
            half = (count + 1) >> 1
            nxt = base + half if d - base < half else base + count
        elif d < count:
            nxt = count
        elif d == count:
            nxt = count + 1
        else:
            return -1
        when = self.count_load_time + _ns(nxt)
        return when if when > now else now + 1

    def current_count(self, now: int) -> int:
        d = _ticks(now - self.count_load_time)
        mode, count = self.mode, self.count
        if mode in (0, 1, 4, 5):
            return (count - d) & 0xFFFF
        if mode == 3:
            return count - (2 * d) % count
        return count - d % count

    def status_byte(self, now: int) -> int:
        return int(self.out(now)) << 7 | self.rw_mode << 4 | self.mode << 1 | int(self.bcd)


CHANNEL_VMSTATE = VMState(
    "pit-channel",
    1,
    [
        u32("count"),
        u16("latched_count"),
        u8("count_latched"),
        boolean("status_latched"),
        u8("status"),
        u8("read_state"),
        u8("write_state"),
        u8("write_latch"),
        u8("rw_mode"),
        u8("mode"),
        boolean("bcd"),
        boolean("gate"),
        i64("count_load_time"),
        i64("next_transition_time"),
    ],
)


class I8254(Device):
    """The PIT on ports 0x40-0x43; channel 0 drives ``irq`` (ISA IRQ 0 by default)."""

    name: ClassVar[str] = "i8254"
    description: ClassVar[str] = "8254 programmable interval timer"
    user_creatable: ClassVar[bool] = False
    properties = {
        "iobase": prop_int(0x40),
        "irq": prop_int(0, signed=True),
        "gate-port": prop_int(0x61),
    }
    vmstate = VMState(
        "i8254",
        1,
        [
            struct_list("channel_state", CHANNEL_VMSTATE, SimpleNamespace),
            u8("speaker_data"),
            u8("refresh"),
        ],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.channels = [PITChannel(i) for i in range(3)]
        self.speaker_data = 0
        self.refresh = 0
        self.irq = None
        self._timer = None

    def realize(self) -> None:
        machine = self.machine
        machine.io.add(self.props["iobase"], 4, self, self.name)
        if self.props["gate-port"]:
            machine.io.add(self.props["gate-port"], 1, _GatePort(self), f"{self.name} gate")
        if self.props["irq"] >= 0:
            self.irq = machine.gsi(self.props["irq"])
            self._timer = machine.new_timer(self._irq_timer)

    @property
    def channel_state(self) -> list[PITChannel]:
        """The three channels as migration sees them (loading copies into the live ones)."""
        return self.channels

    @channel_state.setter
    def channel_state(self, loaded: Sequence[Any]) -> None:
        for state in loaded:
            if not 1 <= state.count <= 0x10000 or state.mode > 7 or state.rw_mode > RW_WORD0:
                raise StreamError(f"{self.name}: invalid channel state (count {state.count})")
        copy_states(self.name, self.channels, loaded, CHANNEL_VMSTATE)

    def _now(self) -> int:
        return self.machine.clock.ns()

    def reset(self) -> None:
        now = self._now()
        for channel in self.channels:
            channel.reset(now)
        self.speaker_data = 0
        self.refresh = 0
        self._irq_update(now)

    def post_load(self) -> None:
        channel = self.channels[0]
        if self._timer is None:
            return
        if channel.next_transition_time >= 0:
            self._timer.mod(channel.next_transition_time)
        else:
            self._timer.cancel()
        if self.irq is not None:
            self.irq.set(channel.out(self._now()))

    # --- channel 0 interrupt ---------------------------------------------------

    def _irq_update(self, now: int) -> None:
        if self._timer is None:
            return
        channel = self.channels[0]
        expire = channel.next_transition(now)
        self.irq.set(channel.out(now))
        channel.next_transition_time = expire
        if expire >= 0:
            self._timer.mod(expire)
        else:
            self._timer.cancel()

    def _irq_timer(self) -> None:
        self._irq_update(self.channels[0].next_transition_time)

    def _load_count(self, channel: PITChannel, value: int) -> None:
        channel.count = value or 0x10000
        channel.count_load_time = self._now()
        if channel.index == 0:
            self._irq_update(channel.count_load_time)

    def set_gate(self, index: int, level: bool) -> None:
        """Gate input of channel ``index``: a rising edge restarts modes 1, 2, 3 and 5."""
        channel = self.channels[index]
        if channel.mode in (1, 2, 3, 5) and not channel.gate and level:
            channel.count_load_time = self._now()
            if index == 0:
                self._irq_update(channel.count_load_time)
        channel.gate = bool(level)

    # --- registers --------------------------------------------------------------------

    def _latch_count(self, channel: PITChannel) -> None:
        if not channel.count_latched:
            channel.latched_count = channel.current_count(self._now()) & 0xFFFF
            channel.count_latched = channel.rw_mode

    def port_write(self, port: int, size: int, value: int) -> None:
        addr = (port - self.props["iobase"]) & 3
        value &= 0xFF
        if addr == 3:
            self._write_control(value)
            return
        channel = self.channels[addr]
        state = channel.write_state
        if state == RW_MSB:
            self._load_count(channel, value << 8)
        elif state == RW_WORD0:
            channel.write_latch = value
            channel.write_state = RW_WORD1
        elif state == RW_WORD1:
            self._load_count(channel, channel.write_latch | value << 8)
            channel.write_state = RW_WORD0
        else:
            self._load_count(channel, value)

    def _write_control(self, value: int) -> None:
        select = value >> 6
        if select == 3:  # read-back
            now = self._now()
            for channel in self.channels:
                if not value & (2 << channel.index):
                    continue
                if not value & 0x20:
                    self._latch_count(channel)
                if not value & 0x10 and not channel.status_latched:
                    channel.status = channel.status_byte(now)
                    channel.status_latched = True
            return
        channel = self.channels[select]
        access = (value >> 4) & 3
        if access == 0:
            self._latch_count(channel)
            return
        channel.rw_mode = channel.read_state = channel.write_state = access
        channel.mode = (value >> 1) & 7
        channel.bcd = bool(value & 1)

    def port_read(self, port: int, size: int) -> int:
        addr = (port - self.props["iobase"]) & 3
        if addr == 3:
            return 0  # the control word register is write-only
        channel = self.channels[addr]
        if channel.status_latched:
            channel.status_latched = False
            return channel.status
        if channel.count_latched:
            latched = channel.latched_count
            if channel.count_latched == RW_MSB:
                channel.count_latched = 0
                return latched >> 8
            if channel.count_latched == RW_WORD0:
                channel.count_latched = RW_MSB
            else:
                channel.count_latched = 0
            return latched & 0xFF
        count = channel.current_count(self._now())
        state = channel.read_state
        if state == RW_MSB:
            return (count >> 8) & 0xFF
        if state == RW_WORD0:
            channel.read_state = RW_WORD1
            return count & 0xFF
        if state == RW_WORD1:
            channel.read_state = RW_WORD0
            return (count >> 8) & 0xFF
        return count & 0xFF


class _GatePort:
    """Port 0x61 as the PC speaker logic has it: gate 2, speaker data, refresh toggle, OUT2."""

    def __init__(self, pit: I8254) -> None:
        self.pit = pit

    def port_read(self, port: int, size: int) -> int:
        pit = self.pit
        channel = pit.channels[2]
        pit.refresh ^= 0x10  # the DRAM refresh bit toggles on every read, as QEMU's pcspk
        out = channel.out(pit._now())
        return int(channel.gate) | pit.speaker_data << 1 | pit.refresh | int(out) << 5

    def port_write(self, port: int, size: int, value: int) -> None:
        pit = self.pit
        pit.speaker_data = (value >> 1) & 1
        pit.set_gate(2, bool(value & 1))
