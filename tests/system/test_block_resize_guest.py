"""block_resize under a running guest, in qemu-system-i386 and arctern-system alike.

The guest (resize_guest.c) prints its virtio-blk disk's capacity and waits; the test
resizes the drive through the qemu.qmp client; the guest must take the
configuration-change interrupt (QEMU raises ISR status 3) and read the new capacity.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

import pytest
from guests.build import BASE_ARGS, emulator_command
from guests.qmp import connect_qmp, disconnect_all, qmp_option

HERE = Path(__file__).parent
GUEST = [HERE / "resize_guest.c", HERE.parent / "guests" / "virtio_mmio.c"]


def _run(emulator: str, kernel: Path, workdir: Path, fmt: str) -> tuple[list[str], int]:
    image, sock = workdir / f"disk.{fmt}", workdir / "qmp.sock"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), "1M"], check=True)
    command = emulator_command(emulator)
    command[-1] += ",acpi=off"
    command += [*BASE_ARGS, "-kernel", str(kernel), *qmp_option(sock)]
    command += ["-drive", f"file={image},format={fmt},if=none,id=d0"]
    command += ["-device", "virtio-blk-device,drive=d0"]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    lines: list[str] = []
    waiting = threading.Event()

    def read() -> None:
        for raw in process.stdout:
            lines.append(raw.decode(errors="replace").rstrip("\r\n"))
            if lines[-1] == "waiting":
                waiting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waiting.wait(60), lines

        async def resize() -> None:
            qmp = await connect_qmp(sock)
            try:
                await qmp.execute("block_resize", {"device": "d0", "size": 3 << 20})
            finally:
                await disconnect_all(qmp)

        asyncio.run(resize())
        status = process.wait(60)
    finally:
        process.kill()
        process.wait()
    reader.join(10)
    return lines, status


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_guest_sees_the_new_capacity_after_a_config_interrupt(guest_elf, tmp_path, fmt):
    kernel = guest_elf(GUEST)
    runs = {}
    for emulator in ("qemu", "arctern"):
        (tmp_path / emulator).mkdir()
        runs[emulator] = _run(emulator, kernel, tmp_path / emulator, fmt)
    assert runs["arctern"] == runs["qemu"]
    assert runs["qemu"] == (
        ["capacity 2048 sectors", "waiting", "interrupt status 3", "capacity 6144 sectors"],
        1,  # isa-debug-exit: (0 << 1) | 1
    )
