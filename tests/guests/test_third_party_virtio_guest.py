"""A virtio device from a separately installed distribution, driven by a real guest.

The distribution is made the way pip leaves one (a package and a ``dist-info``
with an ``arctern.devices`` entry point) and put on PYTHONPATH of
``arctern-system``. Its device, written on ``arctern.virtio`` alone, is an
entropy source (device ID 4) that hands out a counting pattern instead of
random bytes. The virtio-rng guest finds it on the virtio-mmio transport of
arctern-devices (no virtio-rng-device is on the command line) and reads
through it with every check passing.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from guests.build import BASE_ARGS, emulator_command
from guests.rng_guest import ENTROPY_LINES, SOURCES

DEVICE = """
    from arctern.hookspecs import hookimpl
    from arctern.machine.vmstate import VMState
    from arctern.virtio import VIRTIO_FIELDS, VirtioDevice, sg_write

    CYCLE = bytes(range(251))

    class CountingEntropy(VirtioDevice):
        name = "counting-entropy-device"
        description = "an entropy source that counts (for tests only)"
        device_id = 4
        vmstate = VMState("counting-entropy", 1, [*VIRTIO_FIELDS])

        def realize(self):
            self.next = 0

        def queue_config(self):
            return (8,)

        def handle_queue(self, vq):
            mem = self.machine.address_space
            while (elem := vq.pop()) is not None:
                data = (CYCLE * (elem.in_len // 251 + 2))[self.next : self.next + elem.in_len]
                self.next = (self.next + elem.in_len) % 251
                vq.push(elem, sg_write(mem, elem.in_sg, data))
            self.notify(vq)


    @hookimpl
    def arctern_devices():
        return [CountingEntropy]
"""


def install_distribution(site: Path) -> None:
    package = site / "counting_entropy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(DEVICE))
    info = site / "counting_entropy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-entropy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[arctern.devices]\ncounting = counting_entropy.plugin\n"
    )


def test_guest_drives_a_device_of_another_distribution(guest_elf, tmp_path):
    site = tmp_path / "site"
    install_distribution(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCTERN_")}
    env.update(PYTHONPATH=str(site), ARCTERN_CACHE_DIR=str(tmp_path / "cache"))
    command = [
        *emulator_command("arctern"),
        *BASE_ARGS,
        "-kernel",
        str(guest_elf(SOURCES)),
        "-device",
        "counting-entropy-device",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result.stderr  # the guest's exit(0)
    assert result.stdout.splitlines() == [
        "virtio-rng: slot 23 version 1 features 39000000 queue max 1024",
        *ENTROPY_LINES,
    ]
