"""arctern-system against qemu-system-i386 -M microvm: boot-to-exit, timer interrupts, idling.

Every row runs the same guest ELF (tests/system/*.c on the tests/guests runtime)
under both emulators as separate processes with the same options, and reports
the median wall time and the CPU time the process used:

* boot to exit: a guest that prints a few lines and exits through isa-debug-exit
  (process start-up, plugin discovery, Multiboot loading, the first blocks);
* timer interrupts: the PIT ticking at 10 kHz through the 8259 pair into a HLT
  loop, 2000 ticks (ideal: 0.2 s); shows the cost of the main loop's timer,
  IRQ and idle path;
* idle: 20 ticks at 20 Hz (ideal: 1 s of HLT); the CPU time shows whether the
  idle loop sleeps or spins;
* -icount shift=5,sleep=off: 40 ticks at 20 Hz, 2 s of guest time that an idle
  guest skips through (both emulators count instructions as guest time).

Ratios are Arctern / QEMU (above 1: Arctern takes longer).

    .venv/bin/python benchmarks/bench_system.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from guests.build import BASE_ARGS, build_guest, emulator_command  # noqa: E402

GUESTS = ROOT / "tests/system"
ROWS = [
    ("boot to exit", "printf_guest.c", None, 13, ()),
    ("timer interrupts 10 kHz x2000", "ticks_guest.c", "hz=10000 count=2000", 1, ()),
    ("idle: 20 Hz x20 in HLT", "ticks_guest.c", "hz=20 count=20", 1, ()),
    (
        "-icount 5,sleep=off: 2 s of ticks",
        "ticks_guest.c",
        "hz=20 count=40",
        1,
        ("-icount", "shift=5,sleep=off"),
    ),
]


def run_once(
    emulator: str, elf: Path, append: str | None, status: int, extra: tuple[str, ...]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the emulator process) of one run."""
    command = emulator_command(emulator)
    command[-1] += ",acpi=off"
    command += [*BASE_ARGS, "-kernel", str(elf), *extra]
    if append is not None:
        command += ["-append", append]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _pid, wait_status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    out, err = proc.communicate()
    if proc.returncode != status:
        raise SystemExit(f"{emulator} exited {proc.returncode}, not {status}: {err.decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'row':<32} {'QEMU wall':>10} {'Arctern wall':>13} {'ratio':>7}"
        f" {'QEMU CPU':>9} {'Arctern CPU':>12}"
    )
    for label, source, append, status, extra in ROWS:
        elf = build_guest(GUESTS / source)
        figures = {}
        for emulator in ("qemu", "arctern"):
            runs = [run_once(emulator, elf, append, status, extra) for _ in range(args.repeat)]
            figures[emulator] = (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
            )
        (qw, qc), (aw, ac) = figures["qemu"], figures["arctern"]
        print(f"{label:<32} {qw:>9.3f}s {aw:>12.3f}s {aw / qw:>6.1f}x {qc:>8.3f}s {ac:>11.3f}s")


if __name__ == "__main__":
    main()
