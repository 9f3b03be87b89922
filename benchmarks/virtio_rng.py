"""virtio-rng throughput (the device side of a guest's entropy reads) against its own source.

The testing kit's scripted guest driver keeps one device-writable buffer of
``--size`` bytes in the requestq of a virtio-rng device on a virtio-mmio
transport, kicks, and collects the completion, ``--count`` times: the device
pops the chain, fills guest RAM from ``os.urandom`` in place and pushes the
used entry. The peer is ``os.urandom`` alone making the same bytes, so the
ratio is what the virtio path keeps of the host's random source (1.0: no cost).

    .venv/bin/python benchmarks/virtio_rng.py [--size BYTES] [--count N]
"""

from __future__ import annotations

import argparse
import os
import time

from arctern.machine.machine import Machine, MachineType
from arctern.plugins import Registry
from arctern.testing.virtio import MMIODriver

MiB = 1 << 20
BASE = 0xFEB00000


class Board(MachineType):
    """RAM, one virtio-mmio transport and a virtio-rng device; nothing else."""

    name = "virtio-rng-bench"

    def build(self, machine: Machine) -> None:
        machine.create_device("virtio-mmio", addr=BASE, irq=5)

    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        """No guest code: the driver is scripted."""


def device_rate(size: int, count: int) -> float:
    """Bytes per second through the device."""
    registry = Registry(strict=False).discover(["device"])
    machine = Machine(Board(), registry=registry, ram_size=64 * MiB)
    machine.build()
    machine.create_device("virtio-rng-device")
    machine.power_on()
    machine.resume()  # virtio-rng serves a running machine only, as QEMU
    drv = MMIODriver(machine.address_space, BASE)
    ring = drv.init(0, 8, 1 * MiB)
    sent = ring.add([], [size])
    start = time.perf_counter()
    for _ in range(count):
        drv.kick()
        if ring.collect() != [(sent["head"], size)]:
            raise RuntimeError("the device did not fill the buffer")
        drv.ack()
        ring.publish(sent["head"])  # the driver hands the same buffer back
    elapsed = time.perf_counter() - start
    machine.close()
    return size * count / elapsed


def source_rate(size: int, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        os.urandom(size)
    return size * count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per request")
    parser.add_argument("--count", type=int, default=2000, help="requests")
    args = parser.parse_args()
    ours = device_rate(args.size, args.count)
    peer = source_rate(args.size, args.count)
    print(f"{'path':<28}{'MiB/s':>10}")
    print(f"{'virtio-rng (arctern)':<28}{ours / MiB:>10.0f}")
    print(f"{'os.urandom alone (peer)':<28}{peer / MiB:>10.0f}")
    print(f"ratio (arctern / peer): {ours / peer:.2f}")


if __name__ == "__main__":
    main()
