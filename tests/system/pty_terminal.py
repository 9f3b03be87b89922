"""An emulator on a pseudo-terminal, driven as a user at a terminal drives it.

``expect()`` waits for output (never a fixed sleep); its timeout only turns a
hang into a failure. The transcript keeps every byte the terminal showed.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Sequence

TIMEOUT = 60.0


class PtyTerminal:
    def __init__(self, argv: Sequence[str]) -> None:
        self.fd, slave = pty.openpty()
        try:
            self.process = subprocess.Popen(
                list(argv), stdin=slave, stdout=slave, stderr=subprocess.PIPE, close_fds=True
            )
        finally:
            os.close(slave)
        self.transcript = bytearray()
        self._mark = 0  # where the next expect() starts looking
        self._eof = False

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, needle: bytes, timeout: float = TIMEOUT) -> bytes:
        """Wait until ``needle`` shows; returns the output up to its end since the last expect."""
        deadline = time.monotonic() + timeout
        while (at := self.transcript.find(needle, self._mark)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                raise AssertionError(
                    f"{needle!r} did not show; the terminal shows "
                    f"{bytes(self.transcript[self._mark :])!r} (status {self.process.poll()})"
                )
            self._read(left)
        end = at + len(needle)
        shown, self._mark = bytes(self.transcript[self._mark : end]), end
        return shown

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Read the output to its end and return the exit status."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        return self.process.wait(max(0.0, deadline - time.monotonic()))

    def rest(self) -> bytes:
        """Output after the last expect()."""
        return bytes(self.transcript[self._mark :])

    def _read(self, timeout: float) -> None:
        if not select.select([self.fd], [], [], timeout)[0]:
            return
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the emulator closed the terminal (it exited)
            data = b""
        if data:
            self.transcript += data
        else:
            self._eof = True

    def close(self) -> str:
        """End the process if it still runs; its stderr."""
        if self.process.poll() is None:
            self.process.kill()
        _out, err = self.process.communicate(timeout=TIMEOUT)
        os.close(self.fd)
        return err.decode(errors="replace")
