"""Build the bare-metal test guests (multiboot ELFs) and run them like a user would.

Every guest is ``guests/common/start.S`` (multiboot header, GDT, stack, IRQ stub)
plus ``guests/NAME/main.c``, built with i686-linux-gnu-gcc. ``run`` starts an
emulator on ``-M microvm,acpi=off`` with the serial port on stdout and returns
the exit status and the serial output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from guests.build import CC, CFLAGS

GUESTS = Path(__file__).parent / "guests"
#: The emulators a guest is run under; each test compares their behaviour.
EMULATORS = {
    "qemu": ["qemu-system-i386"],
    "arctern": [str(Path(sys.executable).with_name("arctern-system"))],
}


def build(name: str, out_dir: Path) -> Path:
    out = out_dir / f"{name}.elf"
    common = GUESTS / "common"
    subprocess.run(
        [
            CC,
            *CFLAGS,
            f"-Wl,-T,{common / 'link.ld'}",
            "-o",
            str(out),
            str(common / "start.S"),
            str(GUESTS / name / "main.c"),
        ],
        check=True,
    )
    return out


def run(emulator: str, kernel: Path, *args: str, append: str = "") -> tuple[int, str]:
    command = [
        *EMULATORS[emulator],
        "-M",
        "microvm,acpi=off",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel),
        "-append",
        append,
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout
