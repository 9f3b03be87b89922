"""Whole programs built with i686-linux-gnu-gcc run under arctern-system as under QEMU.

Each program in tests/guests/programs is built at -O0 and -O2 (and -O3 -march=i686
for the ones with the most varied code) and run under ``qemu-system-i386 -M
microvm`` and ``arctern-system -M microvm``: the serial output and the exit
status must be equal, and the output must be the program's full report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent.parent / "guests" / "programs"
#: program -> a line its complete output contains (guards against two equal failures)
EXPECT = {
    "sort": "heap 1 ",
    "crc": "crc32 check cbf43926",
    "div64": "powmod ",
    "format": "100% done",
    "recursion": "queens 8 92",
    "interp": "vm 62\nvm 293\n",
    "bits": "records ",
}
LEVELS = ["-O0", "-O2"]
EXTRA = [("interp", "-O3"), ("sort", "-O3"), ("bits", "-Os"), ("div64", "-O3")]
CASES = [(name, level) for name in EXPECT for level in LEVELS] + EXTRA


@pytest.mark.parametrize(("name", "level"), CASES, ids=[f"{n}{lv}" for n, lv in CASES])
def test_program_output_matches_qemu(guest_elf, run_guest_both, name, level):
    elf = guest_elf(PROGRAMS / f"{name}.c", cflags=[level])
    runs = run_guest_both(elf)
    qemu_output, qemu_status = runs["qemu"]
    assert EXPECT[name] in qemu_output, qemu_output
    assert runs["arctern"] == runs["qemu"]
