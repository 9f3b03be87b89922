"""Guest instructions per second of the i386 CPU against unicorn-engine on the same ELF.

The guest (benchmarks/guests/cpu_bench.c with the multiboot runtime of the system
tests, built with i686-linux-gnu-gcc -O2) runs CRC-32 over a buffer, a sieve and a
byte-copy loop, a few million instructions, and prints its results on COM1. Both
CPUs get the ELF's segments in RAM and the Multiboot entry state (flat protected
mode, EAX=0x2BADB002, EBX=0x9500), a COM1 that is always ready and the
isa-debug-exit port; both must print the same results. Arctern's retired-instruction
count is the instruction count of the run; unicorn's rate uses the same count
(counting there with a code hook would slow it down many times). Ratio < 1: unicorn
(QEMU's TCG, compiled to host code) is faster.

    .venv/bin/python benchmarks/bench_cpu.py [--repeat N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import unicorn
from unicorn import x86_const as ux

from arctern.machine.memory import RAM, AddressSpace, IOSpace
from arctern_target_i386.cpu import I386CPU

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "tests/system/guests/common"
SOURCE = ROOT / "benchmarks/guests/cpu_bench.c"
RAM_SIZE = 16 << 20
MULTIBOOT_MAGIC, MULTIBOOT_INFO = 0x2BADB002, 0x9500


def build(out_dir: Path) -> Path:
    out = out_dir / "cpu_bench.elf"
    subprocess.run(
        [
            "i686-linux-gnu-gcc", "-std=gnu11", "-O2", "-ffreestanding", "-fno-pic",
            "-fno-stack-protector", "-nostdlib", "-static", "-Wl,--build-id=none",
            "-Wl,--no-warn-rwx-segments", f"-Wl,-T,{RUNTIME / 'link.ld'}", "-o", str(out),
            str(RUNTIME / "start.S"), str(SOURCE),
        ],
        check=True,
    )
    return out


def load_segments(elf: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """Entry point and (physical address, bytes incl. zeroed bss) of each PT_LOAD segment."""
    entry, phoff = struct.unpack_from("<II", elf, 24)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    segments = []
    for i in range(phnum):
        p_type, offset, _vaddr, paddr, filesz, memsz = struct.unpack_from(
            "<6I", elf, phoff + i * phentsize
        )
        if p_type == 1:
            segments.append((paddr, elf[offset : offset + filesz].ljust(memsz, b"\0")))
    return entry, segments


class Board:
    """RAM, a COM1 whose transmitter is always empty, and isa-debug-exit at 0xf4."""

    def __init__(self) -> None:
        self.ram = RAM(RAM_SIZE)
        self.address_space = AddressSpace(self.ram)
        self.io = IOSpace()
        self.io.add(0x3F8, 8, self, "com1")
        self.io.add(0xF4, 1, self, "debug-exit")
        self.exit_request = False
        self.output = bytearray()

    def port_read(self, port: int, size: int) -> int:
        return 0x60 if port == 0x3FD else 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == 0x3F8:
            self.output.append(value & 0xFF)
        elif port == 0xF4:
            self.exit_request = True


def run_arctern(entry: int, segments: list[tuple[int, bytes]]) -> tuple[float, int, bytes]:
    board = Board()
    for addr, data in segments:
        board.ram.write(addr, data)
    cpu = I386CPU(board)
    cpu.enter_flat_protected_mode(entry, MULTIBOOT_MAGIC, MULTIBOOT_INFO)
    start = time.perf_counter()
    while not board.exit_request and not cpu.halted:
        cpu.run(20000)
    return time.perf_counter() - start, cpu.icount, bytes(board.output)


def run_unicorn(entry: int, segments: list[tuple[int, bytes]]) -> tuple[float, bytes]:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0, RAM_SIZE)
    for addr, data in segments:
        uc.mem_write(addr, data)
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
    start = time.perf_counter()
    uc.emu_start(entry, 0xFFFFFFFF)
    return time.perf_counter() - start, bytes(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per CPU (best is kept)")
    parser.add_argument("--profile", action="store_true", help="profile one Arctern run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        elf = build(Path(tmp)).read_bytes()
    entry, segments = load_segments(elf)

    arctern_runs = [run_arctern(entry, segments) for _ in range(args.repeat)]
    unicorn_runs = [run_unicorn(entry, segments) for _ in range(args.repeat)]
    a_time, icount, a_out = min(arctern_runs)
    u_time, u_out = min(unicorn_runs)
    if a_out != u_out:
        raise SystemExit(f"outputs differ:\narctern: {a_out!r}\nunicorn: {u_out!r}")
    print(f"guest output: {a_out.decode().strip().replace(chr(10), ', ')}")
    print(f"guest instructions: {icount}")
    print(f"{'CPU':<24}{'seconds':>10}{'MIPS':>10}")
    print(f"{'arctern (CPython)':<24}{a_time:>10.3f}{icount / a_time / 1e6:>10.2f}")
    print(f"{'unicorn-engine':<24}{u_time:>10.3f}{icount / u_time / 1e6:>10.2f}")
    print(f"ratio arctern/unicorn: {u_time / a_time:.4f}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_arctern, entry, segments)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
