"""A self-pipe that lets migration threads wake the machine's idle main loop.

The main loop sleeps (up to 50 ms) when the guest is idle or paused, and
runs a whole CPU slice between two polls when it is busy; the migration's
worker threads call :meth:`Wakeup.signal` when the main loop has work to do
(the writer wants more pages, the destination finished loading). The idle
loop waits on :meth:`Wakeup.fds`; a running CPU is asked to end its slice
early through ``interrupt`` (the machine's ``exit_request``).
"""

from __future__ import annotations

import os
from collections.abc import Callable


class Wakeup:
    def __init__(self, interrupt: Callable[[], None] | None = None) -> None:
        self._interrupt = interrupt
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def signal(self) -> None:
        """Wake the main loop; cheap and safe from any thread, coalesces when already set."""
        if self._interrupt is not None:
            self._interrupt()
        try:
            os.write(self._write, b"\0")
        except (BlockingIOError, OSError):
            pass  # already signalled (pipe full) or closed

    def drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def fds(self) -> list[int]:
        return [self._read]

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
