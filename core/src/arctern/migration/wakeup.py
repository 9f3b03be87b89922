"""A self-pipe that lets migration threads wake the machine's idle main loop.

The main loop sleeps (up to 50 ms) when the guest is idle or paused; the
migration's worker threads call :meth:`Wakeup.signal` when the main loop has
work to do (the writer wants more pages, the destination finished loading),
and the loop, which waits on :meth:`Wakeup.fds`, runs its poll hooks at once.
"""

from __future__ import annotations

import os


class Wakeup:
    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def signal(self) -> None:
        """Wake the main loop; cheap and safe from any thread, coalesces when already set."""
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
