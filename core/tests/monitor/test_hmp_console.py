"""An interactive HMP console fed as a user's terminal feeds it (-monitor stdio, a socket)."""

from __future__ import annotations

import os
import time

from arctern.machine.chardev import MemoryChardev
from arctern.monitor.hmp import BANNER, PROMPT
from arctern.monitor.monitor import Monitor


class Terminal(MemoryChardev):
    """What the user sees: a screen that applies the line editor's cursor moves."""

    def getvalue(self) -> str:
        lines, line, col = [], [], 0
        text = self.output.decode()
        assert "\n" not in text.replace("\r\n", "")  # QEMU's CRLF line ends
        i = 0
        while i < len(text):
            if text.startswith("\x1b[D", i):
                col, i = col - 1, i + 3
            elif text.startswith("\x1b[K", i):
                del line[col:]
                i += 3
            elif text.startswith("\r\n", i):
                lines.append("".join(line))
                line, col, i = [], 0, i + 2
            else:
                line[col : col + 1] = [text[i]]
                col, i = col + 1, i + 1
        return "\n".join([*lines, "".join(line)])


def _console(registry, machine):
    """A monitor alone on a terminal, as -monitor stdio: (monitor, terminal)."""
    monitor = Monitor(machine, registry=registry)
    terminal = Terminal()
    machine.add_chardev("compat_monitor0", terminal)
    monitor.add_hmp_chardev(terminal, "compat_monitor0")
    return monitor, terminal


def _poll_until(machine, condition, timeout: float = 60) -> None:
    """Run the main loop until ``condition()``; the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        machine.run_for(0.01)


def test_console_session(registry, image, tmp_path, make_machine):
    machine = make_machine(image)
    monitor, output = _console(registry, machine)
    assert output.getvalue() == f"{BANNER}\n{PROMPT}"

    def prompts(count: int):
        return lambda: output.getvalue().count(PROMPT) >= count

    output.feed(b"info status\nstop\ninfo status\nbogus\n")
    _poll_until(machine, prompts(5))
    assert output.getvalue().endswith(
        "(qemu) info status\nVM status: running\n(qemu) stop\n(qemu) info status\n"
        "VM status: paused\n(qemu) bogus\nunknown command: 'bogus'\n(qemu) "
    )
    # migrate without -d holds the prompt until the migration ends: 1 MiB of random RAM
    # at 2 MiB/s takes 0.45 s or more (the throttle counts wall-clock time, so a loaded
    # machine only makes it longer); the prompt must still be held once RAM flows, and
    # the line typed meanwhile waits for it.
    machine.ram.data[:] = os.urandom(machine.ram.size)
    output.feed(b"migrate_set_parameter max-bandwidth 2\n")
    _poll_until(machine, prompts(6))
    state = tmp_path / "state"
    output.feed(f"migrate exec:cat>{state}\ninfo status\n".encode())
    _poll_until(machine, lambda: monitor.migration.query().get("status") not in (None, "setup"))
    assert monitor.migration.query()["status"] == "active"
    assert output.getvalue().endswith(f"(qemu) migrate exec:cat>{state}\n")
    _poll_until(machine, prompts(8))
    assert output.getvalue().endswith(
        f"(qemu) migrate exec:cat>{state}\n(qemu) info status\n"
        "VM status: paused (postmigrate)\n(qemu) "
    )
    assert state.stat().st_size > machine.ram.size
    output.feed(b"q\n")
    _poll_until(machine, lambda: machine.exit_status is not None)
    assert machine.exit_status == 0
    monitor.close()
