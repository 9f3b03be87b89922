"""The interactive HMP console (-monitor stdio) over a pipe, as a user's terminal feeds it."""

from __future__ import annotations

import io
import os
import time

from arctern.monitor.hmp import BANNER, PROMPT
from arctern.monitor.monitor import Monitor


class Terminal(io.StringIO):
    """What the user sees; HMP writes QEMU's CRLF line ends, getvalue() shows them as LF."""

    def getvalue(self) -> str:
        raw = super().getvalue()
        assert "\n" not in raw.replace("\r\n", "")
        return raw.replace("\r\n", "\n")


def _console(registry, machine):
    monitor = Monitor(machine, registry=registry)
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    output = Terminal()
    monitor.add_hmp(reader, output)
    return monitor, write_fd, output, reader


def _poll_until(machine, condition, timeout: float = 60) -> None:
    """Run the main loop until ``condition()``; the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        machine.run_for(0.01)


def test_console_session(registry, image, tmp_path, make_machine):
    machine = make_machine(image)
    monitor, write_fd, output, reader = _console(registry, machine)
    assert output.getvalue() == f"{BANNER}\n{PROMPT}"

    def prompts(count: int):
        return lambda: output.getvalue().count(PROMPT) >= count

    os.write(write_fd, b"info status\nstop\ninfo status\nbogus\n")
    _poll_until(machine, prompts(5))
    assert output.getvalue().endswith(
        "VM status: running\n(qemu) (qemu) VM status: paused\n(qemu) unknown command: 'bogus'\n"
        "(qemu) "
    )
    # migrate without -d holds the prompt until the migration ends: 1 MiB of random RAM
    # at 2 MiB/s takes 0.45 s or more (the throttle counts wall-clock time, so a loaded
    # machine only makes it longer); the prompt must still be held once RAM flows.
    machine.ram.data[:] = os.urandom(machine.ram.size)
    os.write(write_fd, b"migrate_set_parameter max-bandwidth 2\n")
    _poll_until(machine, prompts(6))
    state = tmp_path / "state"
    before = output.getvalue()
    os.write(write_fd, f"migrate exec:cat>{state}\ninfo status\n".encode())
    _poll_until(machine, lambda: monitor.migration.query().get("status") not in (None, "setup"))
    assert monitor.migration.query()["status"] == "active"
    assert output.getvalue() == before
    _poll_until(machine, prompts(8))
    assert output.getvalue().endswith("(qemu) VM status: paused (postmigrate)\n(qemu) ")
    assert state.stat().st_size > machine.ram.size
    os.write(write_fd, b"q\n")
    _poll_until(machine, lambda: machine.exit_status is not None)
    assert machine.exit_status == 0
    os.close(write_fd)
    reader.close()
    monitor.close()
