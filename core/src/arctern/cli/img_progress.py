"""qemu-img's ``-p`` progress line: ``    (42.00/100%)`` rewritten in place with ``\\r``."""

from __future__ import annotations

import sys


class Progress:
    """Prints at most every ``step`` percent, like QEMU's qemu-progress.c."""

    def __init__(self, enabled: bool, total: int, step: float = 1.0) -> None:
        self.enabled = enabled
        self.total = max(total, 1)
        self.step = step
        self.done = 0
        self.last = -step
        self._print(0.0)

    def advance(self, count: int) -> None:
        self.done += count
        percent = min(self.done * 100.0 / self.total, 100.0)
        if percent - self.last >= self.step:
            self._print(percent)

    def finish(self) -> None:
        """Show 100% and end the line (convert)."""
        self._print(100.0)
        self.end()

    def end(self) -> None:
        """End the progress line."""
        if self.enabled:
            sys.stdout.write("\n")
            sys.stdout.flush()

    def _print(self, percent: float) -> None:
        self.last = percent
        if self.enabled:
            sys.stdout.write(f"    ({percent:3.2f}/100%)\r")
            sys.stdout.flush()
