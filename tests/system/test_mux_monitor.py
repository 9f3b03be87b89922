"""The HMP monitor inside mon:stdio (-nographic's terminal), driven through a pseudo-terminal.

The echo guest prints ``ready``, reads a line from COM1 and answers it
upper-cased, then exits with the line's length. The serial port and the
monitor share the terminal: C-a c switches, as under qemu-system-i386, whose
transcript of the same keystrokes must be ours byte for byte (but for the
product name and version in the banner).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from pathlib import Path

import pytest
from guests.build import emulator_command
from pty_terminal import PtyTerminal
from qemu.qmp import ConnectError, QMPClient

HERE = Path(__file__).parent
PROMPT = b"(qemu) "
DEBUG_EXIT = ("-device", "isa-debug-exit,iobase=0xf4,iosize=1")
C_A = b"\x01"


@pytest.fixture(scope="module")
def echo(guest_elf) -> Path:
    return guest_elf(HERE / "echo_guest.c")


@pytest.fixture
def start(echo):
    """``start(emulator, *options)``: the echo guest on a terminal, after its "ready"."""
    terminals = []

    def run(emulator: str, *options: str) -> PtyTerminal:
        argv = [*emulator_command(emulator), *options, *DEBUG_EXIT, "-kernel", str(echo)]
        terminal = PtyTerminal(argv)
        terminals.append(terminal)
        terminal.expect(b"ready\r\n")
        return terminal

    yield run
    for terminal in terminals:
        terminal.close()


def command(terminal: PtyTerminal, line: bytes) -> bytes:
    """Type a monitor command and Enter; what it printed after the echoed line."""
    terminal.type(line + b"\r")
    shown = terminal.expect(PROMPT)
    return shown.split(b"\x1b[K\r\r\n")[-1].removesuffix(PROMPT)


def test_c_a_c_opens_the_monitor_and_stop_cont_hold_the_guest(start):
    terminal = start("arctern", "-nographic")
    terminal.type(C_A + b"c")
    banner = terminal.expect(PROMPT)
    assert re.fullmatch(
        rb"Arctern \S+ monitor - type 'help' for more information\r\r\n\(qemu\) ", banner
    )
    assert command(terminal, b"info status") == b"VM status: running\r\r\n"
    assert command(terminal, b"stop") == b""
    terminal.type(C_A + b"c")  # back to the guest
    assert terminal.expect(b"\r\r\n") == b"\r\r\n"
    terminal.type(b"hello\r")  # the UART takes it; the stopped guest cannot answer
    terminal.type(C_A + b"c")
    assert terminal.expect(PROMPT) == PROMPT  # no answer came meanwhile
    assert command(terminal, b"info status") == b"VM status: paused\r\r\n"
    terminal.type(b"cont\r")  # the guest answers at once and exits with the length
    shown = terminal.expect(b"got 'HELLO'\r\n")
    # the monitor keeps the terminal, and the guest's output shows there
    assert shown.endswith(b"cont\x1b[K\r\r\n" + PROMPT + b"got 'HELLO'\r\n")
    assert terminal.wait() == (5 << 1) | 1


def test_quit_from_the_monitor_ends_the_run(start):
    terminal = start("arctern", "-nographic", "-serial", "mon:stdio")  # no default monitor
    terminal.type(C_A + b"c")
    terminal.expect(PROMPT)
    terminal.type(b"quit\r")
    assert terminal.wait() == 0
    assert terminal.rest().endswith(b"quit\x1b[K\r\r\n")


def test_c_a_x_quits_from_either_side(start):
    for keys in (C_A + b"x", C_A + b"c" + C_A + b"x"):
        terminal = start("arctern", "-nographic")
        terminal.type(keys)
        terminal.expect(b"Arctern: Terminated\r\n\r")
        assert terminal.wait() == 0


def test_chardev_mux_with_mon_is_the_same_terminal(start):
    terminal = start(
        "arctern",
        "-nodefaults",
        "-display",
        "none",
        "-chardev",
        "stdio,mux=on,id=c0",
        "-serial",
        "chardev:c0",
        "-mon",
        "chardev=c0",
    )
    terminal.type(C_A + b"c")
    terminal.expect(PROMPT)
    assert command(terminal, b"info status") == b"VM status: running\r\r\n"
    terminal.type(C_A + b"cok\r")
    terminal.expect(b"got 'OK'\r\n")
    assert terminal.wait() == (2 << 1) | 1


#: Keystrokes and what to wait for after each: timestamps, help, monitor, line editing,
#: history, Tab, errors.
SESSION = [
    (C_A + b"t" + C_A + b"h", b"C-a C-a  sends C-a\r\n"),  # timestamps on, the help
    (C_A + b"c", PROMPT),
    (b"info status\r", PROMPT),
    (C_A + b"t" + b"info status\r", PROMPT),  # timestamps off
    # editing: backspace, left arrow, insert, C-a C-a (the mux sends one C-a: home),
    # delete, C-e (end), C-w (erase a word): the line run is "info  status"
    (b"info  versoin\x7f\x7f\x7fon\x1b[D\x1b[Di" + C_A + C_A + b"\x1b[3~i\x05\x17status\r", PROMPT),
    (b"stop\r", PROMPT),
    (b"\x1b[A\x1b[A\x1b[B\r", PROMPT),  # history: up twice, down once
    (b"inf\tstatu\t\r", PROMPT),  # Tab completes a command, then an info topic
    (b"migrate_set_\t", PROMPT),  # two candidates: listed, and the prompt again
    (b"p\tdowntime-limit 300\r", PROMPT),
    (b"nosuch\r", PROMPT),
    (b"info nosuch\r", PROMPT),
    (b"\r", PROMPT),
    (C_A + b"c", b"\r\n"),
    (C_A + b"c", PROMPT),
    (b"sto", b"sto\x1b[K"),
    (C_A + b"c", b"\r\n"),  # a half-typed line is forgotten
    (C_A + b"c", PROMPT),
    (b"c\r", PROMPT),
    (b"quit\r", None),
]


#: The same with -echr 20: C-t escapes, and C-a reaches the guest (which ignores it).
ECHR_SESSION = [
    (b"\x14h", b"C-t C-t  sends C-t\r\n\r"),
    (C_A + b"c" + b"\x14c", PROMPT),
    (b"info status\r", PROMPT),
    (b"quit\r", None),
]


def transcript(start, emulator: str, session=SESSION, *options: str) -> bytes:
    terminal = start(emulator, "-nographic", *options)
    for keys, wait_for in session:
        terminal.type(keys)
        if wait_for is not None:
            terminal.expect(wait_for)
    assert terminal.wait() == 0
    return bytes(terminal.transcript)


def same_but_the_banner(ours: bytes, qemus: bytes) -> bool:
    banner = rb"(Arctern|QEMU) \S+ monitor"
    return re.sub(banner, b"<banner>", ours, count=1) == re.sub(banner, b"<banner>", qemus, count=1)


def test_echr_sets_another_escape_key_as_in_qemu(start):
    ours = transcript(start, "arctern", ECHR_SESSION, "-echr", "20")
    assert same_but_the_banner(ours, transcript(start, "qemu", ECHR_SESSION, "-echr", "20"))
    assert b"\r\n\rC-t c    switch between console and monitor" in ours


def test_the_terminal_shows_what_qemu_shows(start):
    ours, qemus = transcript(start, "arctern"), transcript(start, "qemu")
    banner, stamp = rb"(Arctern|QEMU) \S+ monitor", rb"\[\d\d:\d\d:\d\d\.\d{3}\] "
    ours, qemus = (re.sub(banner, b"<banner>", text, count=1) for text in (ours, qemus))
    ours, qemus = (re.sub(stamp, b"[time] ", text) for text in (ours, qemus))
    assert ours == qemus
    assert b"\r\n[time] VM status: running\r\r\n[time] (qemu) " in ours
    assert ours.count(b"VM status: running\r\r\n") == 3 and b"VM status: paused\r\r\n" in ours
    assert b"unknown command: 'nosuch'" in ours


#: Impossible combinations: QEMU's first error line must be ours (options before -kernel ECHO).
BAD_COMBINATIONS = [
    "-nodefaults -chardev stdio,mux=on,id=c0 -chardev stdio,id=c1",
    "-nodefaults -chardev stdio,mux=maybe,id=c0",
    "-nodefaults -chardev stdio,mux=on,id=c0 -serial stdio",
    "-nodefaults -serial mon:stdio -monitor stdio",
    "-nodefaults -serial mon:none",
    "-nodefaults -serial mon:",
    "-nodefaults -mon chardev=nosuch",
    "-nodefaults -mon c0",
    "-nodefaults -mon mode=readline",
    "-nodefaults -monitor chardev:nosuch",
    "-nodefaults -chardev null,id=c0 -mon chardev=c0,zz=1",
    "-nodefaults -chardev null,id=c0 -mon chardev=c0,pretty=maybe",
    "-nodefaults -chardev null,id=c0,mux=on -mon chardev=c0,mode=bogus",
    "-nodefaults -chardev null,id=c0 -mon chardev=c0 -mon chardev=c0",
    "-nodefaults -chardev null,id=c0,mux=on -mon c0 -mon c0 -mon c0 -mon c0 -mon c0",
    # -nographic's default monitor goes to stdio unless -monitor, -mon or -qmp is given
    "-nographic -serial stdio",
    "-nographic -monitor stdio",
]


def _first_error(stderr: bytes) -> str:
    line = stderr.decode().splitlines()[0] if stderr.strip() else ""
    return (
        line.split(": ", 1)[1]
        if line.startswith(("qemu-system-i386: ", "arctern-system: "))
        else line
    )


@pytest.mark.parametrize("options", BAD_COMBINATIONS)
def test_impossible_combinations_get_qemus_error(echo, options):
    runs = {}
    for emulator in ("qemu", "arctern"):
        argv = [*emulator_command(emulator), "-display", "none", *options.split()]
        result = subprocess.run(
            [*argv, *DEBUG_EXIT, "-kernel", str(echo)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
        runs[emulator] = (result.returncode, _first_error(result.stderr))
    assert runs["arctern"] == runs["qemu"]
    assert runs["arctern"][0] == 1


def test_c_a_b_sends_a_break_as_under_qemu(start):
    """A break is a NUL with LSR.BI for the UART: the guest reads "\\0X" (2 bytes)."""
    for emulator in ("qemu", "arctern"):
        terminal = start(emulator, "-nographic")
        terminal.type(C_A + b"bx\r")  # x waits in the backend until the guest takes the NUL
        terminal.expect(b"got ''\r\n")
        assert terminal.wait() == (2 << 1) | 1, emulator


async def _shutdown_event_of_c_a_x(terminal: PtyTerminal, socket_path: Path) -> dict:
    client = QMPClient("test")
    deadline = time.monotonic() + 60
    while True:  # the socket file may appear just before the server listens
        try:
            await client.connect(str(socket_path))
            break
        except ConnectError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    try:
        terminal.type(C_A + b"x")
        while True:  # client.events: the default listener, buffering every event
            event = await asyncio.wait_for(client.events.get(), 60)
            if event["event"] == "SHUTDOWN":
                return event["data"]
    finally:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()


def test_c_a_x_is_qmp_quit_for_qmp_clients(start, tmp_path):
    """QMP clients see SHUTDOWN {"guest": false, "reason": "host-qmp-quit"}, as from QEMU."""
    for emulator in ("qemu", "arctern"):
        qmp = tmp_path / f"{emulator}.qmp"
        terminal = start(
            emulator, "-nographic", "-serial", "mon:stdio", "-qmp", f"unix:{qmp},server=on,wait=off"
        )
        event = asyncio.run(_shutdown_event_of_c_a_x(terminal, qmp))
        assert event == {"guest": False, "reason": "host-qmp-quit"}, emulator
        assert terminal.wait() == 0
