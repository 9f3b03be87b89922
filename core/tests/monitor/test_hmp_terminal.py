"""HMP on a chardev: the monitor side of mon:stdio, as QEMU 7.2's monitor on a multiplexer."""

from __future__ import annotations

import time

import pytest

from arctern.errors import MachineError
from arctern.machine.chardev import MemoryChardev
from arctern.machine.mux import MuxChardev
from arctern.monitor.hmp import BANNER, INFO, completions
from arctern.monitor.hmp_terminal import TYPED_AHEAD_LIMIT
from arctern.monitor.monitor import Monitor

PROMPT = b"(qemu) "
ENTER_ECHO = b"\x1b[K\r\n"  # the end of the redrawn line, then Enter's newline


@pytest.fixture
def session(registry, image, make_machine):
    """A machine whose serial port and HMP monitor share a mux on a memory terminal."""
    machine = make_machine(image)
    terminal = MemoryChardev()
    mux = MuxChardev(terminal, label="serial0", monitor=True)
    machine.add_serial(mux)
    guest: list[bytes] = []
    mux.set_receiver(guest.append)  # what the UART does
    monitor = Monitor(machine, registry=registry)
    monitor.add_hmp_chardev(mux, "serial0")
    yield machine, monitor, terminal, guest
    monitor.close()


def typed(machine, terminal: MemoryChardev, data: bytes) -> bytes:
    """Type ``data``, run the main loop once; what the terminal showed meanwhile."""
    before = len(terminal.output)
    terminal.feed(data)
    machine.run_for(0.01)
    return bytes(terminal.output[before:])


def test_banner_waits_for_the_first_c_a_c(session):
    machine, monitor, terminal, guest = session
    assert terminal.output == b""  # the serial port has the terminal
    shown = typed(machine, terminal, b"\x01c")
    assert shown == BANNER.encode() + b"\r\n" + PROMPT


def test_a_command_echoes_runs_and_prompts_again(session):
    machine, monitor, terminal, guest = session
    typed(machine, terminal, b"\x01c")
    shown = typed(machine, terminal, b"stop\r")
    assert shown.endswith(b"stop" + ENTER_ECHO + PROMPT)
    assert machine.runstate == "paused"
    shown = typed(machine, terminal, b"info status\r")
    assert shown.endswith(b"info status" + ENTER_ECHO + b"VM status: paused\r\n" + PROMPT)
    typed(machine, terminal, b"c\r")
    assert machine.runstate == "running"


def test_leaving_prints_a_newline_and_coming_back_a_fresh_prompt(session):
    machine, monitor, terminal, guest = session
    typed(machine, terminal, b"\x01c")
    typed(machine, terminal, b"sto")  # half a line, then away: QEMU forgets it
    assert typed(machine, terminal, b"\x01c") == b"\r\n"
    assert typed(machine, terminal, b"to the guest") == b"" and guest == [b"to the guest"]
    assert typed(machine, terminal, b"\x01c") == PROMPT
    assert typed(machine, terminal, b"p\r").endswith(b"unknown command: 'p'\r\n" + PROMPT)


def test_quit_shows_no_prompt_and_ends_the_run(session):
    machine, monitor, terminal, guest = session
    typed(machine, terminal, b"\x01c")
    assert typed(machine, terminal, b"quit\r").endswith(b"quit" + ENTER_ECHO)
    assert machine.exit_status == 0


def test_migrate_holds_the_prompt_and_keeps_what_was_typed(session, tmp_path):
    machine, monitor, terminal, guest = session
    typed(machine, terminal, b"\x01c")
    state = tmp_path / "state"
    shown = typed(machine, terminal, f"migrate exec:cat>{state}\rinfo status\r".encode())
    deadline = time.monotonic() + 60
    while b"VM status" not in shown:  # wait for output, the timeout only catches a hang
        assert time.monotonic() < deadline, shown
        shown += typed(machine, terminal, b"")
    # the line typed ahead waits for the prompt: echoed and run once the migration is over
    after_migrate = shown.split(str(state).encode() + ENTER_ECHO, 1)[1]
    assert after_migrate.startswith(PROMPT + b"i\x1b[K")
    assert after_migrate.endswith(
        b"info status" + ENTER_ECHO + b"VM status: paused (postmigrate)\r\n" + PROMPT
    )
    assert state.stat().st_size > 0


def test_a_plain_chardev_takes_one_monitor(registry, image, make_machine):
    machine = make_machine(image)
    terminal = MemoryChardev()
    machine.add_chardev("c0", terminal)
    monitor = Monitor(machine, registry=registry)
    try:
        monitor.add_hmp_chardev(terminal, "c0")
        assert terminal.output == BANNER.encode() + b"\r\n" + PROMPT  # no mux: at once
        with pytest.raises(MachineError, match="Device 'c0' is in use"):
            monitor.add_hmp_chardev(terminal, "c0")
    finally:
        monitor.close()


def test_what_the_monitor_says_while_away_waits_for_its_return(session):
    machine, monitor, terminal, guest = session
    typed(machine, terminal, b"\x01c")
    # C-a c in the same read as the command: away while the migration runs (it fails
    # once "false" exits); busy, the monitor prints no newline on the way out
    shown = typed(machine, terminal, b"migrate exec:false\r\x01c")
    assert shown.endswith(b"migrate exec:false" + ENTER_ECHO)
    deadline = time.monotonic() + 60
    while monitor.migration.query().get("status") not in ("failed", "completed"):
        assert time.monotonic() < deadline
        machine.run_for(0.01)
    assert typed(machine, terminal, b"") == b""  # the error waits for the monitor's return
    shown = typed(machine, terminal, b"\x01c")
    assert shown.startswith(b"Error: ") and shown.endswith(b"\r\n" + PROMPT)


def test_completion_candidates_are_commands_aliases_and_info_topics():
    assert completions("inf") == (["info"], 3)
    assert sorted(completions("c")[0]) == ["c", "cont"]  # QEMU offers "cont|c" as both
    assert completions("info mig") == (
        ["migrate", "migrate_parameters", "migrate_capabilities"],
        3,
    )
    assert completions("info ")[0] == list(INFO) and completions("")[1] == 0
    assert completions("info status ") == ([], 0)  # nothing completes an argument


def test_input_while_the_prompt_is_held_is_bounded(session, tmp_path, caplog):
    machine, monitor, terminal, guest = session
    typed(machine, terminal, b"\x01c")
    command = f"migrate exec:cat>{tmp_path / 'state'}\r".encode()
    flood = b"\n" * (TYPED_AHEAD_LIMIT + 10)  # empty lines: each gets a prompt once it runs
    shown = typed(machine, terminal, command + flood)
    assert "passed 65536 bytes" in caplog.text  # the last 10 are dropped
    deadline = time.monotonic() + 60
    while shown.count(PROMPT) < TYPED_AHEAD_LIMIT + 1:  # + the one the migration's end gives
        assert time.monotonic() < deadline
        shown += typed(machine, terminal, b"")
    assert (shown + typed(machine, terminal, b"")).count(PROMPT) == TYPED_AHEAD_LIMIT + 1
