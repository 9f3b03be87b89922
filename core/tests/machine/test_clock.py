"""The virtual clock stands still while the guest is paused; timers fire in deadline order."""

import pytest

from arctern.errors import StreamError
from arctern.machine.clock import TimerList, VirtualClock


class FakeHostTime:
    def __init__(self):
        self.now = 1_000_000

    def __call__(self):
        return self.now


@pytest.fixture
def host():
    return FakeHostTime()


def test_clock_advances_only_while_running(host):
    clock = VirtualClock(host)
    host.now += 500
    assert clock.ns() == 0  # starts paused
    clock.resume()
    host.now += 700
    assert clock.ns() == 700
    clock.pause()
    host.now += 10_000
    assert clock.ns() == 700
    clock.resume()
    host.now += 5
    assert clock.ns() == 705


def test_state_carries_guest_time_to_another_clock(host):
    source = VirtualClock(host)
    source.resume()
    host.now += 1234
    source.pause()
    target = VirtualClock(host)
    target.set_state(source.get_state())
    target.resume()
    host.now += 6
    assert target.ns() == 1240
    for bad in ({"ns": -1}, {"ns": "1"}, {}, [], {"ns": True}):
        with pytest.raises(StreamError):
            target.set_state(bad)


def test_timers_fire_in_order_once_due(host):
    clock = VirtualClock(host)
    timers = TimerList(clock)
    fired = []
    a = timers.new_timer(lambda: fired.append("a"))
    b = timers.new_timer(lambda: fired.append("b"))
    c = timers.new_timer(lambda: fired.append("c"))
    a.mod(300)
    b.mod(100)
    c.mod(200)
    c.cancel()
    a.mod(150)  # re-arming replaces the old deadline
    assert timers.next_deadline() == 100
    clock.resume()
    host.now += 120
    assert timers.run_expired() == 1 and fired == ["b"]
    assert a.pending and not b.pending and not c.pending
    host.now += 1000
    timers.run_expired()
    assert fired == ["b", "a"]
    assert timers.next_deadline() is None


def test_periodic_timer_rearms_from_its_callback(host):
    clock = VirtualClock(host)
    timers = TimerList(clock)
    fired_at = []

    def tick():
        fired_at.append(due[0])
        due[0] += 100
        timer.mod(due[0])

    due = [100]
    timer = timers.new_timer(tick)
    timer.mod(due[0])
    clock.resume()
    host.now += 350
    assert timers.run_expired() == 3  # catches up on every period that passed
    assert fired_at == [100, 200, 300] and timer.deadline == 400


def test_rearmed_and_cancelled_timers_leave_no_pile_of_stale_entries(host):
    clock = VirtualClock(host)
    timers = TimerList(clock)
    fired = []
    timer = timers.new_timer(lambda: fired.append(clock.ns()))
    for n in range(100_000):  # a device re-arming a far timeout and cancelling it
        timer.mod(10**12 + n)
        timer.cancel()
    timer.mod(500)
    assert len(timers._heap) < 200
    clock.resume()
    host.now += 1000
    assert timers.run_expired() == 1 and fired == [1000]


def test_instruction_clock_counts_instructions_not_host_time(host):
    from arctern.machine.clock import InstructionClock

    clock = InstructionClock(3, now=host)
    clock.resume()
    host.now += 10**9
    assert clock.ns() == 0  # host time does not count
    clock.account(100)
    assert clock.ns() == 800
    assert clock.instructions_until(800) == 0
    assert clock.instructions_until(801) == 1  # rounded up: the deadline is reached
    assert clock.instructions_until(1600) == 100
    clock.idle(None, 10**6)  # idle with nothing due: time stands still
    assert clock.ns() == 800
    clock.idle(5000, 1000)  # sleep=on: host time passes, up to the deadline
    assert clock.ns() == 1800
    clock.idle(2000, 10**6)
    assert clock.ns() == 2000
    target = InstructionClock(3, sleep=False, now=host)
    target.set_state(clock.get_state())
    target.idle(9000, 0)  # sleep=off: straight to the deadline
    assert target.ns() == 9000
    with pytest.raises(ValueError):
        InstructionClock(11)
