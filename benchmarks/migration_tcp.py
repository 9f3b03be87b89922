"""Live migration over tcp on loopback: Arctern against qemu-system-i386 -M microvm.

Both emulators boot the same Multiboot ELF: a 192 MiB segment of random
data (so RAM holds random data from the first instruction, whatever the
speed of the CPU) and a loop that keeps dirtying a small working set of 64
pages. Each source is migrated to a destination process started with
``-incoming tcp:127.0.0.1:PORT``, with max-bandwidth unlimited and the
default 300 ms downtime limit, driven through QMP with the qemu.qmp client.
The table shows total time, throughput, downtime and the ratio to QEMU
(throughput: >1 means Arctern is faster).

    .venv/bin/python benchmarks/migration_tcp.py [--data-mib 192] [--ram-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keystone
from qemu.qmp import QMPClient

MiB = 1 << 20
CODE_ADDR = 0x100000
DATA_ADDR = 0x200000
MULTIBOOT_MAGIC, MULTIBOOT_FLAGS = 0x1BADB002, 0x3
UNLIMITED = 100 << 30  # bytes/s: "max-bandwidth unlimited" in terms both accept

GUEST_LOOP = """
    mov esp, 0x90000
again:
    mov edi, {ws:#x}
    mov ecx, 64
page:
    mov [edi], ebx
    add edi, 4096
    loop page
    inc ebx
    jmp again
"""


def build_guest(path: Path, data_bytes: int, ram_bytes: int) -> None:
    """A Multiboot v1 ELF32: header + dirtying loop, then ``data_bytes`` of random data."""
    working_set = DATA_ADDR + data_bytes + MiB
    if working_set + 64 * 4096 > ram_bytes:
        raise SystemExit("--ram-mib too small for --data-mib plus the working set")
    header = struct.pack(
        "<III", MULTIBOOT_MAGIC, MULTIBOOT_FLAGS, -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS) & 0xFFFFFFFF
    )
    assembler = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_32)
    code, _ = assembler.asm(GUEST_LOOP.format(ws=working_set), CODE_ADDR + len(header))
    text = header + bytes(code)
    code_off, data_off = 0x1000, 0x2000
    elf = struct.pack(
        "<4sBBBB8sHHIIIIIHHHHHH",
        b"\x7fELF",
        1,
        1,
        1,
        0,
        bytes(8),  # ELF32, little endian, version 1
        2,
        3,
        1,
        CODE_ADDR + len(header),
        52,
        0,
        0,
        52,
        32,
        2,
        40,
        0,
        0,
    )
    phdrs = struct.pack("<IIIIIIII", 1, code_off, CODE_ADDR, CODE_ADDR, len(text), len(text), 5, 4)
    phdrs += struct.pack(
        "<IIIIIIII", 1, data_off, DATA_ADDR, DATA_ADDR, data_bytes, data_bytes, 6, 4096
    )
    with open(path, "wb") as f:
        f.write(elf + phdrs)
        f.seek(code_off)
        f.write(text)
        f.seek(data_off)
        for _ in range(data_bytes // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom(data_bytes % (16 * MiB)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def qmp_connect(path: Path, process: subprocess.Popen) -> QMPClient:
    deadline = time.monotonic() + 30
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"exited with status {process.returncode}")
        await asyncio.sleep(0.05)
    client = QMPClient(path.name)
    await client.connect(str(path))
    return client


async def migrate(command: list[str], guest: Path, ram_mib: int, tmp: Path) -> dict:
    """Start source and destination, migrate the running guest once; query-migrate at the end."""
    port = free_port()
    base = command + ["-M", "microvm", "-m", str(ram_mib), "-kernel", str(guest)]
    base += ["-display", "none", "-nodefaults"] if "qemu" in command[0] else []
    src_sock, dst_sock = tmp / "src.qmp", tmp / "dst.qmp"
    for sock in (src_sock, dst_sock):
        sock.unlink(missing_ok=True)
    qmp_opt = "unix:{},server=on,wait=off"
    dst = subprocess.Popen(
        base + ["-qmp", qmp_opt.format(dst_sock), "-incoming", f"tcp:127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    src = subprocess.Popen(
        base + ["-qmp", qmp_opt.format(src_sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        source = await qmp_connect(src_sock, src)
        dest = await qmp_connect(dst_sock, dst)
        await asyncio.sleep(1.0)  # the guest is up and dirtying its working set
        await source.execute("migrate-set-parameters", {"max-bandwidth": UNLIMITED})
        await source.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
        while True:
            info = await source.execute("query-migrate")
            if info["status"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.02)
        if info["status"] != "completed":
            raise RuntimeError(f"migration {info['status']}: {info.get('error-desc', '')}")
        while (await dest.execute("query-status"))["status"] == "inmigrate":
            await asyncio.sleep(0.02)
        for client in (source, dest):
            await client.disconnect()
        return info
    finally:
        for process in (src, dst):
            if process.poll() is None:
                process.terminate()
            process.wait()


def row(name: str, info: dict | None, error: str = "") -> tuple[str, float] | None:
    if info is None:
        print(f"{name:<18} unavailable: {error}")
        return None
    seconds = info["total-time"] / 1000
    rate = info["ram"]["transferred"] / MiB / seconds
    print(
        f"{name:<18}{info['total-time']:>10} ms{rate:>12.1f} MiB/s{info['downtime']:>10} ms"
        f"{info['ram']['dirty-sync-count']:>8}"
    )
    return name, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=192)
    parser.add_argument("--ram-mib", type=int, default=256)
    args = parser.parse_args()
    arctern = shutil.which("arctern-system") or str(
        Path(sys.executable).with_name("arctern-system")
    )
    peers = [("qemu-system-i386", ["qemu-system-i386"]), ("arctern-system", [arctern])]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        guest = tmp / "guest.elf"
        build_guest(guest, args.data_mib * MiB, args.ram_mib * MiB)
        print(f"guest: {args.data_mib} MiB random data in {args.ram_mib} MiB RAM, tcp loopback")
        print(f"{'peer':<18}{'total':>13}{'throughput':>18}{'downtime':>13}{'passes':>8}")
        rates = {}
        for name, command in peers:
            try:
                result = row(name, asyncio.run(migrate(command, guest, args.ram_mib, tmp)))
            except (TimeoutError, RuntimeError, OSError) as exc:
                result = row(name, None, str(exc))
            if result:
                rates[result[0]] = result[1]
        if len(rates) == 2:
            ratio = rates["arctern-system"] / rates["qemu-system-i386"]
            print(f"throughput ratio arctern/qemu: {ratio:.2f}")


if __name__ == "__main__":
    main()
