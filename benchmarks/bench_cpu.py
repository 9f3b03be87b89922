"""Guest instructions per second of the i386 CPU against unicorn-engine on the same ELF.

The guest (benchmarks/guests/cpu_bench.c on the tests/guests runtime, built with
i686-linux-gnu-gcc -O2) runs CRC-32 over a buffer, a sieve and a byte-copy loop,
a few million instructions, and prints its results on COM1. Arctern runs it on
the microvm machine exactly as arctern-system does (``launch()``: Multiboot loader,
COM1, isa-debug-exit); unicorn-engine gets the ELF's segments in RAM and the same
entry state (flat protected mode, EAX=0x2BADB002, EBX=0x9500), a COM1 that is
always ready and the debug-exit port. Both must print the same results.
Arctern's retired-instruction count is the instruction count of the run;
unicorn's rate uses the same count (counting there with a code hook would slow
it down many times). Wall-clock and process CPU time are both shown: on a busy
machine the CPU-time figures are the steadier ones. Ratio < 1: unicorn (QEMU's
TCG, compiled to host code) is faster.

    .venv/bin/python benchmarks/bench_cpu.py [--repeat N] [--profile] [--source PC]

``--profile`` names the hot regions ``<i386 block 0x...>``; ``--source 0x...``
prints the Python generated for the region at that guest address.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import unicorn
from unicorn import x86_const as ux

from arctern.cpu.translate import clear_compile_cache
from arctern.machine import Machine, MemoryChardev
from arctern.machine.elf import parse_elf
from arctern.machine.launch import DeviceConfig, MachineConfig, launch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from guests.build import build_guest  # noqa: E402

SOURCE = ROOT / "benchmarks/guests/cpu_bench.c"
RAM_SIZE = 128 << 20
MULTIBOOT_MAGIC, MULTIBOOT_INFO = 0x2BADB002, 0x9500


def microvm(elf: Path, serial: MemoryChardev) -> Machine:
    """The machine arctern-system builds for ``-M microvm,acpi=off -kernel ELF``."""
    return launch(
        MachineConfig(
            "microvm",
            machine_options={"acpi": "off"},
            ram_size=RAM_SIZE,
            kernel=str(elf),
            devices=[DeviceConfig("isa-debug-exit", {"iobase": "0xf4", "iosize": "1"})],
            serials=[serial],
        )
    )


def region_source(elf: Path, pc: int) -> str:
    """The generated Python of the region entered at guest address ``pc`` in a full run."""
    machine = microvm(elf, MemoryChardev())
    try:
        machine.run()
        texts = {b.text for cpu in machine.cpus for b in cpu.cache.blocks.values() if b.pc == pc}
    finally:
        machine.close()
    return "\n".join(sorted(texts)) or f"no region at {pc:#x}"


def run_arctern(elf: Path) -> tuple[float, float, int, bytes]:
    """Run the guest on microvm; (seconds, CPU seconds, guest instructions, serial output)."""
    clear_compile_cache()  # every run pays for its translations
    serial = MemoryChardev()
    machine = microvm(elf, serial)
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        machine.run()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        icount = sum(cpu.icount for cpu in machine.cpus)
        return seconds, cpu_seconds, icount, bytes(serial.output)
    finally:
        machine.close()


def run_unicorn(elf: Path) -> tuple[float, float, bytes]:
    data = elf.read_bytes()
    image = parse_elf(data)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0, RAM_SIZE)
    for seg in image.segments:
        uc.mem_write(seg.paddr, data[seg.offset : seg.offset + seg.filesz])
    output = bytearray()

    def port_in(uc, port, size, user):
        return 0x60 if port == 0x3FD else 0

    def port_out(uc, port, size, value, user):
        if port == 0x3F8:
            output.append(value & 0xFF)
        elif port == 0xF4:
            uc.emu_stop()

    uc.hook_add(unicorn.UC_HOOK_INSN, port_in, None, 1, 0, ux.UC_X86_INS_IN)
    uc.hook_add(unicorn.UC_HOOK_INSN, port_out, None, 1, 0, ux.UC_X86_INS_OUT)
    uc.reg_write(ux.UC_X86_REG_CR0, 0x11)
    uc.reg_write(ux.UC_X86_REG_EAX, MULTIBOOT_MAGIC)
    uc.reg_write(ux.UC_X86_REG_EBX, MULTIBOOT_INFO)
    start, cpu_start = time.perf_counter(), time.process_time()
    uc.emu_start(image.entry, 0xFFFFFFFF)
    return time.perf_counter() - start, time.process_time() - cpu_start, bytes(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per CPU (best is kept)")
    parser.add_argument("--profile", action="store_true", help="profile one Arctern run")
    parser.add_argument(
        "--source", type=lambda text: int(text, 0), metavar="PC",
        help="print the Python generated for the region at guest address PC",
    )
    args = parser.parse_args()
    elf = build_guest(SOURCE)
    arctern_runs = [run_arctern(elf) for _ in range(args.repeat)]
    unicorn_runs = [run_unicorn(elf) for _ in range(args.repeat)]
    a_time, a_cpu, icount, a_out = min(arctern_runs)
    u_time, u_cpu, u_out = min(unicorn_runs)
    if a_out != u_out:
        raise SystemExit(f"outputs differ:\narctern: {a_out!r}\nunicorn: {u_out!r}")
    print(f"guest output: {a_out.decode().strip().replace(chr(10), ', ')}")
    print(f"guest instructions: {icount} (best of {args.repeat} runs each)")
    print(f"{'CPU':<22}{'seconds':>9}{'MIPS':>9}{'CPU s':>9}{'MIPS/CPU s':>12}")
    rows = (("arctern -M microvm", a_time, a_cpu), ("unicorn-engine", u_time, u_cpu))
    for name, wall, cpu in rows:
        rates = f"{icount / wall / 1e6:>9.2f}{cpu:>9.3f}{icount / cpu / 1e6:>12.2f}"
        print(f"{name:<22}{wall:>9.3f}{rates}")
    print(f"ratio arctern/unicorn: {u_time / a_time:.4f} (wall), {u_cpu / a_cpu:.4f} (CPU time)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_arctern, elf)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    if args.source is not None:
        print(region_source(elf, args.source))


if __name__ == "__main__":
    main()
