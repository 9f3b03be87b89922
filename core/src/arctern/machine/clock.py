"""The virtual clock and its timers.

:class:`VirtualClock` follows host time while the guest runs and stands still
while it is paused, so a guest sees no time pass across a pause or a live
migration (``get_state``/``set_state`` carry it to the destination).
Device timers (:class:`Timer`, made by ``machine.new_timer``) fire on this
clock; the main loop runs the expired ones between CPU slices.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from arctern.errors import StreamError


class VirtualClock:
    """Guest time in nanoseconds; starts paused at 0."""

    def __init__(self, now: Callable[[], int] = time.monotonic_ns) -> None:
        self._now = now
        self._base = 0  # guest ns at the moment the clock last resumed (or while paused)
        self._resumed_at: int | None = None

    @property
    def running(self) -> bool:
        return self._resumed_at is not None

    def ns(self) -> int:
        if self._resumed_at is None:
            return self._base
        return self._base + self._now() - self._resumed_at

    def pause(self) -> None:
        if self._resumed_at is not None:
            self._base = self.ns()
            self._resumed_at = None

    def resume(self) -> None:
        if self._resumed_at is None:
            self._resumed_at = self._now()

    def host_ns_until(self, deadline_ns: int) -> int:
        """Host nanoseconds until the clock reaches ``deadline_ns`` (0 if passed)."""
        return max(0, deadline_ns - self.ns())

    #: True for a clock that counts guest instructions (``-icount``), not host time.
    counts_instructions = False
    #: Whether an idle main loop waits in host time for the next deadline.
    sleeps_when_idle = True

    def account(self, instructions: int) -> None:
        """The CPUs executed ``instructions`` (only an instruction-counting clock moves)."""

    def idle(self, deadline_ns: int | None, host_ns: int) -> None:
        """The CPUs idled for ``host_ns`` waiting for ``deadline_ns`` (host time moved us)."""

    def get_state(self) -> dict[str, Any]:
        return {"ns": self.ns()}

    def set_state(self, state: dict[str, Any]) -> None:
        value = state.get("ns") if isinstance(state, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise StreamError(f"bad clock state {state!r}")
        running = self.running
        self._base = value
        self._resumed_at = self._now() if running else None


class InstructionClock(VirtualClock):
    """QEMU's ``-icount shift=N``: guest time is executed instructions times 2**shift ns.

    Guest-visible time then depends only on what the guest executes, so runs
    are repeatable. While the CPUs idle (HLT), time moves to the next timer
    deadline: in host time with ``sleep`` (QEMU's default), at once without.
    """

    counts_instructions = True

    def __init__(
        self, shift: int, *, sleep: bool = True, now: Callable[[], int] = time.monotonic_ns
    ) -> None:
        super().__init__(now)
        if not 0 <= shift <= 10:
            raise ValueError("icount shift must be 0..10")
        self.shift = shift
        self.sleeps_when_idle = sleep

    def ns(self) -> int:
        return self._base

    def pause(self) -> None:
        self._resumed_at = None

    def resume(self) -> None:
        self._resumed_at = 0

    def account(self, instructions: int) -> None:
        self._base += instructions << self.shift

    def instructions_until(self, deadline_ns: int) -> int:
        """Instructions to execute before the clock reaches ``deadline_ns`` (rounded up)."""
        return max(0, -(-(deadline_ns - self._base) >> self.shift))

    def idle(self, deadline_ns: int | None, host_ns: int) -> None:
        if deadline_ns is None:
            return
        target = min(deadline_ns, self._base + host_ns) if self.sleeps_when_idle else deadline_ns
        self._base = max(self._base, target)

    def set_state(self, state: dict[str, Any]) -> None:
        running = self.running
        super().set_state(state)
        self._resumed_at = 0 if running else None


_MIN_COMPACT = 64


class Timer:
    """A one-shot timer on a :class:`TimerList`; re-arm it with :meth:`mod` for periods."""

    __slots__ = ("_timers", "callback", "deadline", "_token")

    def __init__(self, timers: TimerList, callback: Callable[[], None]) -> None:
        self._timers = timers
        self.callback = callback
        self.deadline: int | None = None
        self._token = 0

    @property
    def pending(self) -> bool:
        return self.deadline is not None

    def mod(self, deadline_ns: int) -> None:
        """Fire ``callback()`` once the virtual clock reaches ``deadline_ns``."""
        self.deadline = int(deadline_ns)
        self._token = self._timers._push(self)

    def cancel(self) -> None:
        self.deadline = None
        self._token = 0


class TimerList:
    """The timers of one clock, in deadline order (a heap with lazy deletion)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[int, int, Timer]] = []
        self._tokens = itertools.count(1)
        self._compact_at = _MIN_COMPACT

    def new_timer(self, callback: Callable[[], None]) -> Timer:
        return Timer(self, callback)

    def _push(self, timer: Timer) -> int:
        token = next(self._tokens)
        heap = self._heap
        heapq.heappush(heap, (timer.deadline, token, timer))
        if len(heap) >= self._compact_at:
            # Re-armed and cancelled timers leave stale entries behind; drop them (in
            # place: run_expired may be iterating) before they pile up.
            heap[:] = [entry for entry in heap if entry[2]._token == entry[1]]
            heapq.heapify(heap)
            self._compact_at = max(_MIN_COMPACT, 2 * len(heap))
        return token

    def _prune(self) -> None:
        heap = self._heap
        while heap and heap[0][2]._token != heap[0][1]:
            heapq.heappop(heap)

    def next_deadline(self) -> int | None:
        """The earliest pending deadline, or None."""
        self._prune()
        return self._heap[0][0] if self._heap else None

    def run_expired(self) -> int:
        """Run every timer whose deadline has passed; return how many ran."""
        ran = 0
        now = self.clock.ns()
        heap = self._heap
        while True:
            self._prune()
            if not heap or heap[0][0] > now:
                return ran
            _deadline, _token, timer = heapq.heappop(heap)
            timer.deadline = None
            timer._token = 0
            timer.callback()
            ran += 1
