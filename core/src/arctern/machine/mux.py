"""QEMU's character multiplexer: one backend shared by a serial port and the HMP monitor.

``-serial mon:stdio`` (and ``-nographic``), ``-chardev BACKEND,mux=on,id=ID``
with ``-serial chardev:ID`` and ``-mon chardev=ID``: up to four frontends
share one backend. Every frontend's output reaches the backend (guest output
keeps appearing while the monitor has the terminal, as in QEMU); input goes
to the frontend that has the focus. Ctrl-A escapes, as QEMU 7.2's (``-echr``
picks another key than C-a):

    C-a h   print the help        C-a x    exit (status 0)
    C-a c   next frontend         C-a b    send a break to the focused frontend
    C-a t   toggle timestamps     C-a s    commit -snapshot disks (none in Arctern: no-op)
    C-a C-a send a C-a            anything else after C-a is swallowed

Frontends follow :class:`MuxFrontend`; a device attaches through the plain
:class:`Chardev` API (:meth:`MuxChardev.set_receiver`), a monitor with
:meth:`MuxChardev.attach`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from arctern.errors import MachineError
from arctern.machine.chardev import Chardev, Receiver

log = logging.getLogger(__name__)

ESCAPE = 0x01  # C-a, QEMU's default; -echr changes it
MAX_FRONTENDS = 4
_HELP_LINES = (
    "% h    print this help",
    "% x    exit emulator",
    "% s    save disk data back to file (if -snapshot)",
    "% t    toggle console timestamps",
    "% b    send break (magic sysrq)",
    "% c    switch between console and monitor",
    "% %  sends %",
)


def help_text(escape: int = ESCAPE) -> bytes:
    """What QEMU 7.2 writes for C-a h ("\\n\\r" line ends: the terminal adds a CR to each LF).

    A control key is named ``C-x``; any other escape character ``Escape-Char``,
    after a line saying which it is.
    """
    if 0 < escape < 26:
        name, head = f"C-{chr(escape - 1 + ord('a'))}", "\n\r"
    else:
        name, head = "Escape-Char", f"\n\rEscape-Char set to Ascii: 0x{escape:02x}\n\r\n\r"
    return (head + "".join(line.replace("%", name) + "\n\r" for line in _HELP_LINES)).encode()


TERMINATED = b"Arctern: Terminated\n\r"


class MuxFrontend(Protocol):
    """What the multiplexer tells a frontend (QEMU's chr_read and MUX_IN/MUX_OUT/BREAK)."""

    def receive(self, data: bytes) -> None:
        """Input typed while this frontend has the focus."""

    def focus_in(self) -> None:
        """This frontend now has the terminal."""

    def focus_out(self) -> None:
        """Another frontend takes the terminal."""

    def send_break(self) -> None:
        """C-a b while this frontend has the focus."""


class _DeviceFrontend:
    """A device (a UART) attached with :meth:`Chardev.set_receiver` (and set_break_handler)."""

    def __init__(self, receiver: Receiver, mux: MuxChardev) -> None:
        self.receive = receiver
        self.mux = mux

    def focus_in(self) -> None:
        """A device does not notice."""

    def focus_out(self) -> None:
        """A device does not notice."""

    def send_break(self) -> None:
        if self.mux.break_handler is not None:
            self.mux.break_handler()


class _Timestamps:
    """C-a t: ``[HH:MM:SS.mmm] `` (host time since the first stamp) at each output line start."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.line_start = False  # as QEMU: the first stamp waits for the next line

    def apply(self, data: bytes) -> bytes:
        out = bytearray()
        pos = 0
        while pos < len(data):
            if self.line_start:
                out += self._stamp()
                self.line_start = False
            newline = data.find(b"\n", pos)
            end = len(data) if newline < 0 else newline + 1
            out += data[pos:end]
            self.line_start = newline >= 0
            pos = end
        return bytes(out)

    def _stamp(self) -> bytes:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        ms = int((now - self.start) * 1000)
        secs = ms // 1000
        return b"[%02d:%02d:%02d.%03d] " % (secs // 3600, secs // 60 % 60, secs % 60, ms % 1000)


class MuxChardev(Chardev):
    """A backend shared by up to four frontends, one of which has the focus."""

    name = "mux"

    def __init__(
        self, backend: Chardev, *, label: str = "", monitor: bool = False, escape: int = ESCAPE
    ) -> None:
        super().__init__()
        self.backend = backend
        #: The key that starts an escape (``-echr``): C-a unless told otherwise.
        self.escape = escape
        self.label = label
        #: Spelled ``mon:...``: arctern-system attaches an HMP monitor to it.
        self.wants_monitor = monitor
        self.frontends: list[MuxFrontend] = []
        self.focus = -1
        self._escape_pending = False  # the last input ended with C-a
        self._timestamps: _Timestamps | None = None
        self._on_quit: Callable[[], None] | None = None
        #: The device's break input (C-a b while it has the focus).
        self.break_handler: Callable[[], None] | None = None
        backend.set_receiver(self._input)

    # --- frontends ---------------------------------------------------------------

    def attach(self, frontend: MuxFrontend, *, early: bool = False) -> None:
        """Add a frontend; the newest takes the focus, as in QEMU.

        An ``early`` frontend is one QEMU creates before the devices (a
        monitor): it goes first in the C-a c cycle and takes the focus only
        when it is alone, so the serial port has the terminal at start.
        """
        if len(self.frontends) >= MAX_FRONTENDS:  # QEMU 7.2 says no more than this
            raise MachineError(f"Device '{self.label}' is in use")
        if early and self.frontends:
            self.frontends.insert(0, frontend)
            self.focus += 1
            return
        self.frontends.append(frontend)
        self._set_focus(len(self.frontends) - 1)

    def detach(self, frontend: MuxFrontend) -> None:
        """Remove a frontend; the first remaining one gets the focus if it had it."""
        if frontend not in self.frontends:
            return
        index = self.frontends.index(frontend)
        self.frontends.pop(index)
        if index < self.focus:
            self.focus -= 1
        elif index == self.focus:
            self.focus = -1
            if self.frontends:
                self._set_focus(0)

    def set_receiver(self, callback: Receiver | None) -> None:
        """A device attaches (``callback``) or leaves (None) through the plain Chardev API."""
        if callback is not None:
            self.attach(_DeviceFrontend(callback, self))
            return
        for frontend in [f for f in self.frontends if isinstance(f, _DeviceFrontend)]:
            self.detach(frontend)

    def set_break_handler(self, callback: Callable[[], None] | None) -> None:
        self.break_handler = callback

    def _set_focus(self, index: int) -> None:
        if self.focus >= 0:
            self.frontends[self.focus].focus_out()
        self.focus = index
        self.frontends[index].focus_in()

    # --- output -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Output of any frontend, focused or not, goes to the backend."""
        if self._timestamps is not None:
            data = self._timestamps.apply(data)
        self.backend.write(data)

    # --- input and escapes ------------------------------------------------------------

    def _input(self, data: bytes) -> None:
        start = 0
        if self._escape_pending and data:
            self._escape_pending = False
            self._command(data[0])
            start = 1
        while True:
            at = data.find(self.escape, start)
            if at < 0:
                self._deliver(data[start:])
                return
            self._deliver(data[start:at])
            if at + 1 == len(data):
                self._escape_pending = True
                return
            self._command(data[at + 1])
            start = at + 2

    def _deliver(self, data: bytes) -> None:
        if data and self.focus >= 0:
            self.frontends[self.focus].receive(data)

    def _command(self, key: int) -> None:
        """Act on the key after the escape (QEMU's keys are lower case only)."""
        if key == self.escape:
            self._deliver(bytes([key]))
        elif key in b"h?":
            self.write(help_text(self.escape))
        elif key == ord("x"):
            self.write(TERMINATED)
            if self._on_quit is not None:
                self._on_quit()
        elif key == ord("c") and self.frontends:
            self._set_focus((self.focus + 1) % len(self.frontends))
        elif key == ord("b") and self.focus >= 0:
            self.frontends[self.focus].send_break()
        elif key == ord("t"):
            self._timestamps = None if self._timestamps is not None else _Timestamps()
        elif key == ord("s"):
            log.debug("C-a s: no -snapshot disks to commit")

    # --- the backend -------------------------------------------------------------------

    def set_quit_handler(self, callback: Callable[[], None]) -> None:
        self._on_quit = callback

    def wait_fds(self) -> list[int]:
        return self.backend.wait_fds()

    def poll(self) -> None:
        self.backend.poll()

    def close(self) -> None:
        self.backend.close()
