"""virtio-blk request throughput (the device side of a guest's disk I/O) against `qemu-img bench`.

A scripted guest driver (the one of plugins/devices/tests) builds each request
in guest RAM, kicks the virtio-mmio transport and collects the completion: the
device pops the chain, moves the data between guest RAM and the image through
the BlockBackend, and pushes the used entry. No guest CPU is involved, so the
figure is what the device path costs per request. The peer is ``qemu-img bench
-d 1`` (one request at a time, as here) with the same request size and count on
the same image. Ratio > 1: Arctern faster.

    .venv/bin/python benchmarks/virtio_blk.py [--count N] [--image-size MIB]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

from tool_runs import bench_seconds

from arctern.block import create_image, open_image
from arctern.machine.machine import Machine, MachineType
from arctern.plugins import Registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins/devices/tests"))
from ring_driver import MMIODriver  # noqa: E402

MiB = 1 << 20
BASE = 0xFEB00000
T_IN, T_OUT = 0, 1


class Board(MachineType):
    """RAM, one virtio-mmio transport and a virtio-blk device; nothing else."""

    name = "virtio-blk-bench"

    def build(self, machine: Machine) -> None:
        machine.create_device("virtio-mmio", addr=BASE, irq=5)

    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        """No guest code: the driver is scripted."""


def arctern_rate(path: str, fmt: str, write: bool, size: int, count: int) -> float:
    registry = Registry(strict=False).discover(["device", "block"])
    machine = Machine(Board(), registry=registry, ram_size=64 * MiB)
    machine.add_drive("d0", open_image(path, fmt=fmt))
    machine.build()
    machine.create_device("virtio-blk-device", drive="d0")
    machine.power_on()
    drv = MMIODriver(machine.address_space, BASE)
    # FLUSH and CONFIG_WCE acked, as Linux does: the disk stays in writeback mode.
    ring = drv.init((1 << 9) | (1 << 11) | (1 << 28) | (1 << 29), 256, 1 * MiB)
    data = bytes([0xA5]) * size
    sectors = machine.drives["d0"].length // 512
    step = size // 512
    heap = ring.heap
    start = time.perf_counter()
    sector = 0
    for _ in range(count):
        ring.heap = heap  # the driver reuses its buffers
        header = struct.pack("<IIQ", T_OUT if write else T_IN, 0, sector)
        sent = ring.add([header, data], [1]) if write else ring.add([header], [size, 1])
        drv.kick()
        ring.collect()
        drv.ack()
        ring.release(sent)
        sector = (sector + step) % sectors
    elapsed = time.perf_counter() - start
    machine.close()
    return count / elapsed


def qemu_rate(path: str, fmt: str, write: bool, size: int, count: int) -> float:
    args = ["-f", fmt, "-d", "1", "-c", str(count), "-s", str(size)]
    return count / bench_seconds("qemu-img", args + (["-w"] if write else []) + [path])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--image-size", type=int, default=64, help="MiB")
    args = parser.parse_args()
    print(f"{'row':<24}{'arctern req/s':>15}{'qemu-img req/s':>16}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("raw", "qcow2"):
            path = str(Path(tmp) / f"bench.{fmt}")
            create_image(path, fmt, args.image_size * MiB)
            for size in (4096, 65536):
                for write in (True, False):
                    row = f"{fmt} {'write' if write else 'read'} {size // 1024}K"
                    ours = arctern_rate(path, fmt, write, size, args.count)
                    theirs = qemu_rate(path, fmt, write, size, args.count)
                    print(f"{row:<24}{ours:>15.0f}{theirs:>16.0f}{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
