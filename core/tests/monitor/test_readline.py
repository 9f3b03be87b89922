"""The HMP line editor draws what QEMU 7.2's readline draws, key by key."""

from __future__ import annotations

import pytest

from arctern.monitor.readline import MAX_HISTORY, ReadLine

BACK, FORWARD, CLEAR = b"\x1b[D", b"\x1b[C", b"\x1b[K"
UP, DOWN, LEFT = b"\x1b[A", b"\x1b[B", b"\x1b[D"


@pytest.fixture
def editor():
    screen, lines = bytearray(), []
    rl = ReadLine(screen.extend, lines.append)
    rl.show_prompt("(qemu) ")
    return rl, screen, lines


def test_each_key_redraws_the_line_as_qemu(editor):
    rl, screen, lines = editor
    rl.feed(b"ab\r")
    # QEMU's own bytes for typing "ab" and Enter at the prompt
    assert bytes(screen) == b"(qemu) a" + CLEAR + BACK + b"ab" + CLEAR + b"\n"
    assert lines == ["ab"]


def test_backspace_and_insertion_in_the_middle(editor):
    rl, screen, lines = editor
    rl.feed(b"abc")
    del screen[:]
    rl.feed(b"\x7f")  # DEL erases the c
    assert bytes(screen) == BACK * 3 + b"ab" + CLEAR
    del screen[:]
    rl.feed(LEFT + b"X")  # cursor one left, then insert
    # QEMU: one back for the arrow, back over the one character left of the cursor,
    # the whole line, clear, then back to the cursor after the X
    assert bytes(screen) == BACK + BACK + b"aXb" + CLEAR + BACK
    rl.feed(b"\n")
    assert lines == ["aXb"]


def test_word_erase_home_end_and_delete(editor):
    rl, screen, lines = editor
    rl.feed(b"info  status\x17")  # C-w takes the word before the cursor
    rl.feed(b"cpus\x01\x04\x05!\r")  # C-a home, C-d delete, C-e end
    rl.feed(b"xyz\x1b[1~\x1b[3~\x1b[4~\x1bOH\x1bOF.\r")  # Home, Delete, End (both spellings)
    assert lines == ["nfo  cpus!", "yz."]


def test_history_walks_back_and_forth_and_moves_repeats_to_the_end(editor):
    rl, screen, lines = editor
    rl.feed(b"one\rtwo\rone\r")
    assert rl.history == ["two", "one"]
    rl.feed(UP + UP + b"\r")
    assert lines[-1] == "two"
    rl.feed(UP + UP + DOWN + DOWN + b"new\r")  # past the newest entry: an empty line
    assert lines[-1] == "new" and rl.history == ["one", "two", "new"]


def test_history_keeps_the_last_64_lines(editor):
    rl, screen, lines = editor
    for i in range(MAX_HISTORY + 5):
        rl.feed(b"cmd%d\r" % i)
    assert len(rl.history) == MAX_HISTORY and rl.history[0] == "cmd5"


def test_the_line_reaches_the_command_as_utf8_and_is_echoed_as_typed(editor):
    rl, screen, lines = editor
    typed = "migrate exec:cat>/tmp/é".encode()
    rl.feed(typed + b"\r")
    assert lines == ["migrate exec:cat>/tmp/é"]
    assert bytes(screen).endswith(typed + CLEAR + b"\n")


def test_restart_forgets_a_half_typed_line(editor):
    rl, screen, lines = editor
    rl.feed(b"sto")
    rl.restart()
    rl.show_prompt("(qemu) ")
    rl.feed(b"p\r")
    assert lines == ["p"]


def test_tab_completes_one_candidate_and_lists_several_as_qemu():
    screen, lines = bytearray(), []
    words = ["stop", "status", "system_reset", "s"]

    def completer(text: str):
        word = text.split(" ")[-1]
        return [w for w in words if w.startswith(word)], len(word)

    rl = ReadLine(screen.extend, lines.append, completer)
    rl.show_prompt("(qemu) ")
    rl.feed(b"sy\t")
    assert bytes(screen).endswith(BACK * 2 + b"system_reset " + CLEAR)
    rl.feed(b"\rst\t")  # stop, status: the common prefix is typed, the list printed
    listing = b"\nstatus    stop      \n(qemu) st" + CLEAR
    assert bytes(screen).endswith(listing) and lines == ["system_reset "]
    rl.feed(b"x\t\r")  # no candidate: nothing happens
    assert lines[-1] == "stx"
    many = ReadLine(screen.extend, lines.append, lambda text: ([f"w{i:02}" for i in range(9)], 0))
    many.show_prompt("> ")
    del screen[:]
    many.feed(b"\t")  # 10 columns of 8 per row, as QEMU's 80-column layout
    assert bytes(screen) == (
        b"\n" + b"".join(b"w%02d       " % i for i in range(8)) + b"\nw08       \n> w0" + CLEAR
    )
