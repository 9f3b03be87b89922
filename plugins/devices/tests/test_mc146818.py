"""MC146818 RTC: registers, formats, time on the virtual clock, interrupts, vmstate."""

import calendar
import time

import pytest
from device_harness import advance, reset_device, save_load

from arctern.errors import StreamError

SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM, WDAY, MDAY, MONTH, YEAR = range(10)
A, B, C, D, CENTURY = 10, 11, 12, 13, 0x32
S = 1_000_000_000
# 2099-12-31 23:59:58 UTC, a Thursday
LATE = calendar.timegm((2099, 12, 31, 23, 59, 58))


@pytest.fixture
def rtc(machine):
    return reset_device(machine, "mc146818")


def get(machine, index):
    machine.io.write(0x70, 1, index)
    return machine.io.read(0x71, 1)


def put(machine, index, value):
    machine.io.write(0x70, 1, index)
    machine.io.write(0x71, 1, value)


def clock(machine):
    return [get(machine, i) for i in (CENTURY, YEAR, MONTH, MDAY, HOUR, MIN, SEC)]


def test_power_on_registers_and_host_time(machine, rtc):
    assert [get(machine, r) for r in (A, B, C, D)] == [0x26, 0x02, 0x00, 0x80]
    year = time.gmtime().tm_year
    assert get(machine, CENTURY) == int(str(year // 100), 16)
    assert get(machine, YEAR) == int(f"{year % 100:02d}", 16)  # BCD
    assert machine.io.read(0x70, 1) == 0xFF
    put(machine, 0x40, 0x5A)
    assert get(machine, 0x40) == 0x5A
    put(machine, C, 0xFF)
    put(machine, D, 0x00)
    assert (get(machine, C), get(machine, D)) == (0, 0x80)


def test_time_follows_the_virtual_clock_across_a_rollover(machine, rtc):
    rtc.set_time(LATE)
    assert clock(machine) == [0x20, 0x99, 0x12, 0x31, 0x23, 0x59, 0x58]
    assert get(machine, WDAY) == 5
    advance(machine, 2 * S)
    assert clock(machine) == [0x21, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]
    assert get(machine, WDAY) == 6
    machine.clock.pause()
    machine.host_time.ns += 60 * S  # host time passes while the guest is paused
    machine.clock.resume()
    assert get(machine, SEC) == 0x00


def test_binary_and_12_hour_formats(machine, rtc):
    rtc.set_time(calendar.timegm((2024, 2, 29, 23, 5, 9)))
    put(machine, B, 0x04)  # binary, 12 hours
    assert [get(machine, r) for r in (HOUR, MIN, SEC, MONTH, YEAR)] == [0x8B, 5, 9, 2, 24]
    put(machine, B, 0x06)  # binary, 24 hours
    assert get(machine, HOUR) == 23
    put(machine, B, 0x00)  # BCD, 12 hours
    assert get(machine, HOUR) == 0x91


def test_set_mode_freezes_and_loads_the_time(machine, rtc):
    put(machine, B, 0x82)
    for index, value in ((SEC, 0x30), (MIN, 0x15), (HOUR, 0x08), (MDAY, 0x01), (MONTH, 0x03)):
        put(machine, index, value)
    put(machine, YEAR, 0x25)
    put(machine, CENTURY, 0x20)
    advance(machine, 5 * S)
    assert get(machine, SEC) == 0x30  # stopped while SET
    put(machine, B, 0x02)
    advance(machine, 3 * S)
    assert clock(machine) == [0x20, 0x25, 0x03, 0x01, 0x08, 0x15, 0x33]


def test_divider_reset_stops_the_clock_and_restarts_half_a_second_later(machine, rtc):
    rtc.set_time(LATE)
    put(machine, A, 0x76)
    advance(machine, 10 * S)
    assert get(machine, SEC) == 0x58
    put(machine, A, 0x26)
    advance(machine, S // 2 - 1)
    assert get(machine, SEC) == 0x58
    advance(machine, 2)
    assert get(machine, SEC) == 0x59


def test_update_in_progress_in_the_last_244_us(machine, rtc):
    rtc.set_time(LATE)
    assert not get(machine, A) & 0x80
    advance(machine, S - 200_000)
    assert get(machine, A) & 0x80
    advance(machine, 300_000)
    assert not get(machine, A) & 0x80


def test_periodic_interrupt_rate(machine, rtc):
    line = machine.gsi(8)
    put(machine, A, 0x26)  # 1024 Hz
    put(machine, B, 0x42)
    count = 0
    for _ in range(2049):  # a second and a bit: edges are due 1 ns after each period, as QEMU
        advance(machine, S // 2048)
        if line.level:
            assert get(machine, C) & 0xC0 == 0xC0  # IRQF | PF (UF once a second), cleared
            assert not line.level
            count += 1
    assert count == 1024
    put(machine, B, 0x02)
    advance(machine, S)
    assert get(machine, C) == 0x10  # updates go on; no periodic flag with PIE off


def test_update_ended_and_alarm_interrupts(machine, rtc):
    line = machine.gsi(8)
    rtc.set_time(LATE)
    put(machine, B, 0x12)  # UIE
    advance(machine, S)
    assert line.level and get(machine, C) == 0x90
    put(machine, SEC_ALARM, 0x01)
    put(machine, MIN_ALARM, 0xC0)  # any minute
    put(machine, HOUR_ALARM, 0xFF)  # any hour
    put(machine, B, 0x22)  # AIE only
    advance(machine, S)
    assert not line.level and get(machine, C) == 0x10  # 00:00:00: update, no alarm
    advance(machine, S)
    assert line.level and get(machine, C) == 0xB0  # 00:00:01: the alarm


def test_pending_flag_raises_the_line_when_its_enable_is_set(machine, rtc):
    line = machine.gsi(8)
    advance(machine, S)  # UF set with UIE off
    assert not line.level
    put(machine, B, 0x12)
    assert line.level


def test_vmstate_round_trip_continues_the_same_time(machine, rtc):
    rtc.set_time(LATE)
    put(machine, A, 0x2F)  # 2 Hz
    put(machine, B, 0x42)
    advance(machine, S // 4)
    clone = save_load(machine, rtc, "mc146818")
    target = clone.machine
    assert clone.cmos == rtc.cmos
    target.host_time.ns = 10**15  # another host, another monotonic clock
    target.resume()
    advance(target, S)
    assert get(target, SEC) == 0x59
    assert target.gsi(8).level  # the periodic timer was re-armed


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("index", 200, "CMOS index"),
        ("base_rtc", 1 << 60, "clock"),
        ("base_rtc", -(1 << 60), "clock"),
    ],
)
def test_hostile_state_is_refused(machine, rtc, field, value, message):
    vmstate = type(rtc).vmstate
    data = vmstate.save(rtc)
    data[field] = value
    with pytest.raises(StreamError, match=message):
        vmstate.load(rtc, data, 1)
        rtc.post_load()


def test_system_reset_keeps_the_time_and_drops_pie_aie_and_flags(machine, rtc):
    rtc.set_time(LATE)
    put(machine, B, 0x7A)  # PIE, AIE, UIE, SQWE, 24 hours
    advance(machine, S)
    assert machine.gsi(8).level
    rtc.reset()
    assert get(machine, B) == 0x12 and get(machine, C) == 0 and not machine.gsi(8).level
    assert get(machine, SEC) == 0x59


def test_ps2_century_byte_is_the_century_register(machine, rtc):
    rtc.set_time(LATE)
    assert get(machine, 0x37) == 0x20
    put(machine, 0x37, 0x19)
    assert get(machine, CENTURY) == 0x19
