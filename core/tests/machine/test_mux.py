"""The character multiplexer behind mon:stdio: QEMU's Ctrl-A escapes, focus and shared output."""

from __future__ import annotations

import re

import pytest

from arctern.errors import MachineError
from arctern.machine.chardev import MemoryChardev, open_chardev
from arctern.machine.mux import MuxChardev, help_text


class Recorder:
    """A frontend that records what the multiplexer tells it."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def receive(self, data: bytes) -> None:
        self.events.append(data)

    def focus_in(self) -> None:
        self.events.append("in")

    def focus_out(self) -> None:
        self.events.append("out")

    def send_break(self) -> None:
        self.events.append("break")


def typed(terminal: MemoryChardev, mux: MuxChardev, data: bytes) -> None:
    terminal.feed(data)
    mux.poll()


@pytest.fixture
def setup():
    """A terminal, the mux on it, a device (set_receiver) and a monitor-like frontend."""
    terminal = MemoryChardev()
    mux = MuxChardev(terminal, label="serial0")
    device: list[bytes] = []
    mux.set_receiver(device.append)
    monitor = Recorder()
    mux.attach(monitor, early=True)
    return terminal, mux, device, monitor


def test_the_device_has_the_terminal_first_and_c_a_c_toggles(setup):
    terminal, mux, device, monitor = setup
    typed(terminal, mux, b"to the guest")
    assert device == [b"to the guest"] and monitor.events == []
    typed(terminal, mux, b"\x01cinfo status\r")
    assert monitor.events == ["in", b"info status\r"]
    typed(terminal, mux, b"\x01")  # an escape split across two reads
    typed(terminal, mux, b"cback")
    assert monitor.events[-1] == "out" and device[-1] == b"back"


def test_output_of_every_frontend_reaches_the_terminal(setup):
    terminal, mux, device, monitor = setup
    typed(terminal, mux, b"\x01c")  # the monitor has the focus: guest output still shows
    mux.write(b"guest says hi\n")
    assert terminal.output == b"guest says hi\n"


def test_c_a_c_a_sends_one_c_a_to_the_focused_frontend(setup):
    terminal, mux, device, monitor = setup
    typed(terminal, mux, b"ab\x01\x01c")
    assert b"".join(device) == b"ab\x01c" and monitor.events == []


def test_help_is_qemus_text_and_other_keys_are_swallowed(setup):
    terminal, mux, device, monitor = setup
    typed(terminal, mux, b"\x01h")
    assert terminal.output == help_text()
    assert terminal.output.startswith(b"\n\rC-a h    print this help\n\rC-a x    exit emulator\n\r")
    assert terminal.output.endswith(b"\n\rC-a C-a  sends C-a\n\r")
    typed(terminal, mux, b"\x01q\x01H\x01X")  # unknown (QEMU's keys are lower case)
    assert terminal.output == help_text() and device == []


def test_c_a_x_writes_terminated_and_quits(setup):
    terminal, mux, device, monitor = setup
    quits = []
    mux.set_quit_handler(lambda: quits.append(True))
    typed(terminal, mux, b"g\x01xh")
    assert quits == [True] and terminal.output == b"Arctern: Terminated\n\r"
    assert device == [b"g", b"h"]


def test_c_a_b_sends_a_break_to_the_focused_frontend(setup):
    terminal, mux, device, monitor = setup
    typed(terminal, mux, b"\x01c\x01b")
    assert monitor.events == ["in", "break"]


def test_c_a_t_stamps_each_output_line_from_the_next_one(setup):
    terminal, mux, device, monitor = setup
    typed(terminal, mux, b"\x01t")
    mux.write(b"rest of a line\nfirst\nsecond")
    mux.write(b" line\n")
    text = terminal.output.decode()
    stamp = r"\[00:00:\d\d\.\d{3}\] "
    assert re.fullmatch(f"rest of a line\n{stamp}first\n{stamp}second line\n", text), text
    typed(terminal, mux, b"\x01t")
    mux.write(b"plain\n")
    assert terminal.output.endswith(b"\nplain\n")


def test_a_lone_frontend_keeps_the_focus_and_detach_hands_it_on():
    terminal = MemoryChardev()
    mux = MuxChardev(terminal)
    first, second = Recorder(), Recorder()
    mux.attach(first, early=True)
    assert first.events == ["in"]  # alone: it has the terminal
    mux.attach(second)  # the newest takes the focus, as in QEMU
    assert first.events == ["in", "out"] and second.events == ["in"]
    mux.detach(second)
    assert first.events == ["in", "out", "in"]
    typed(terminal, mux, b"x")
    assert first.events[-1] == b"x"


def test_at_most_four_frontends():
    mux = MuxChardev(MemoryChardev(), label="c0")
    for _ in range(4):
        mux.attach(Recorder())
    with pytest.raises(MachineError, match="Device 'c0' is in use"):
        mux.attach(Recorder())


def test_mon_spelling_opens_a_mux_that_wants_a_monitor(tmp_path):
    mux = open_chardev(f"mon:file:{tmp_path / 'log'}", "serial0")
    assert isinstance(mux, MuxChardev) and mux.wants_monitor and mux.label == "serial0"
    mux.write(b"logged")
    mux.close()
    assert (tmp_path / "log").read_bytes() == b"logged"
    for spec, message in (("mon:", "''"), ("mon:none", "'none'"), ("mon:zz", "'zz'")):
        with pytest.raises(MachineError, match=f"^{message} is not a valid char driver$"):
            open_chardev(spec)


def test_c_a_b_reaches_the_device_break_handler(setup):
    terminal, mux, device, monitor = setup
    breaks = []
    mux.set_break_handler(lambda: breaks.append(True))
    typed(terminal, mux, b"\x01b")
    assert breaks == [True] and device == []
    typed(terminal, mux, b"\x01c\x01b")  # the monitor has the focus: it gets this one
    assert breaks == [True] and monitor.events == ["in", "break"]


def test_another_escape_key_as_echr_sets_it():
    terminal = MemoryChardev()
    mux = MuxChardev(terminal, escape=0x14)  # -echr 20: C-t
    device: list[bytes] = []
    mux.set_receiver(device.append)
    typed(terminal, mux, b"\x01x\x14\x14\x14h")  # C-a is plain input now
    assert device == [b"\x01x", b"\x14"]
    assert terminal.output.startswith(b"\n\rC-t h    print this help\n\r")
    assert terminal.output.endswith(b"\n\rC-t C-t  sends C-t\n\r")
    # a printable escape is named Escape-Char, after a line saying which it is (QEMU's bytes)
    assert help_text(0x7E).startswith(
        b"\n\rEscape-Char set to Ascii: 0x7e\n\r\n\rEscape-Char h    print this help\n\r"
    )
    assert help_text(0x7E).endswith(b"\n\rEscape-Char Escape-Char  sends Escape-Char\n\r")
