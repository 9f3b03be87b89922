"""HMP on a character backend, as QEMU's readline monitor: ``mon:stdio``, ``-mon chardev=ID``.

The terminal behaves as QEMU 7.2's monitor on a multiplexer, byte for byte:
the banner waits until the monitor first gets the terminal (C-a c), the
line editor echoes and redraws (:mod:`arctern.monitor.readline`), leaving
prints a newline, coming back prints a fresh prompt, and what the monitor
says while the serial port has the terminal is held until it comes back.
Commands are the ones of :mod:`arctern.monitor.hmp`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from arctern.errors import MachineError
from arctern.machine.chardev import Chardev
from arctern.machine.mux import MuxChardev
from arctern.monitor.hmp import (
    BANNER,
    PROMPT,
    completions,
    migration_wait_result,
    run_console_line,
)
from arctern.monitor.readline import ReadLine

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor

log = logging.getLogger(__name__)

#: Input kept while ``migrate`` holds the prompt; more is dropped (a client cannot grow it).
TYPED_AHEAD_LIMIT = 64 << 10
_LINE_END = re.compile(rb"[\r\n]")


class HMPTerminal:
    """One HMP monitor on a chardev; a :class:`~arctern.machine.mux.MuxFrontend` on a mux."""

    def __init__(
        self, monitor: Monitor, chardev: Chardev, label: str = "", history: list[str] | None = None
    ) -> None:
        self.monitor = monitor
        self.chardev = chardev
        self.readline = ReadLine(self._echo, self._run, completions)
        if history is not None:  # shared with earlier terminals of the same monitor
            self.readline.history = history
        self.focused = False  # QEMU's !mux_out
        self.opened = False  # QEMU's reset_seen: the banner went out
        self.waiting_for_migration = False  # ``migrate`` without -d holds the prompt
        self._held = bytearray()  # output while another frontend has the terminal
        self._typed = bytearray()  # input while a command holds the prompt
        if isinstance(chardev, MuxChardev):
            chardev.attach(self, early=True)
        elif chardev.in_use:
            raise MachineError(f"Device '{label}' is in use")
        else:
            chardev.set_receiver(self.receive)
            self.focus_in()
        self._print(f"{BANNER}\n")
        self.opened = True
        self._show_prompt()

    # --- output ------------------------------------------------------------------------

    def _print(self, text: str) -> None:
        """Monitor output: QEMU's CRLF line ends; held while the terminal is elsewhere."""
        self._echo(text.encode())

    def _echo(self, data: bytes) -> None:
        self._held += data.replace(b"\n", b"\r\n")
        if self.focused:
            data, self._held = bytes(self._held), bytearray()
            self.chardev.write(data)

    def _show_prompt(self) -> None:
        """QEMU's monitor_resume: a fresh, empty line after the prompt."""
        if self.focused and not self.waiting_for_migration:
            self.readline.restart()
            self.readline.show_prompt(PROMPT)

    # --- the multiplexer's events ----------------------------------------------------

    def focus_in(self) -> None:
        if self.focused:
            return
        self.focused = True
        if self.opened:
            self._show_prompt()

    def focus_out(self) -> None:
        if not self.focused:
            return
        if self.opened and not self.waiting_for_migration:
            self._print("\n")
        self.focused = False

    def send_break(self) -> None:
        """QEMU's monitor ignores a break."""

    # --- input ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        self._typed += data
        self._take_input()
        if len(self._typed) > TYPED_AHEAD_LIMIT:  # typed (or sent) while the prompt is held
            log.warning("HMP: input kept for after the command passed %d bytes", TYPED_AHEAD_LIMIT)
            del self._typed[TYPED_AHEAD_LIMIT:]

    def _take_input(self) -> None:
        """Feed the line editor up to each line end, stopping while a command holds the prompt."""
        typed, pos = self._typed, 0
        while pos < len(typed) and not self.waiting_for_migration and self.focused:
            end = _LINE_END.search(typed, pos)
            cut = end.end() if end else len(typed)
            self.readline.feed(bytes(typed[pos:cut]))
            pos = cut
        del typed[:pos]

    def _run(self, line: str) -> None:
        output = run_console_line(self.monitor, line)
        if output is None:
            self.waiting_for_migration = True
            return
        self._print(output)
        if not self.monitor.quitting:  # QEMU shows no prompt after quit
            self._show_prompt()

    # --- the monitor's front-end interface ------------------------------------------------

    def fds(self) -> list[int]:
        """Input arrives through the chardev, which the machine polls."""
        return []

    def poll(self) -> None:
        """Release the prompt once the migration ``migrate`` waits for is over."""
        if not self.waiting_for_migration:
            return
        result = migration_wait_result(self.monitor)
        if result is None:
            return
        self.waiting_for_migration = False
        self._print(result)
        self._show_prompt()
        self._take_input()

    def close(self) -> None:
        if isinstance(self.chardev, MuxChardev):
            self.chardev.detach(self)
        else:
            self.chardev.set_receiver(None)
