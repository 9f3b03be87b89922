"""-d ITEMS and -D FILE: QEMU-style debug logs go to the file, the serial output stays clean."""

from __future__ import annotations

from pathlib import Path

from guests.build import run_guest

HERE = Path(__file__).parent


def test_in_asm_log_goes_to_the_file(guest_elf, tmp_path):
    elf = guest_elf(HERE / "printf_guest.c")
    log = tmp_path / "trace.log"
    output, status = run_guest("arctern", elf, "-d", "in_asm", "-D", str(log))
    assert status == (6 << 1) | 1 and output.startswith("magic 0x2badb002")
    text = log.read_text()
    assert text.startswith("IN:\n0x0010000c:")  # the first block is the Multiboot entry
    assert "lgdt" in text.splitlines()[1]  # crt0 loads its GDT first
