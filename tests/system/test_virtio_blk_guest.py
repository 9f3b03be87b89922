"""A guest with its own virtio-blk driver reads and writes a qcow2 and a raw disk.

The guest (virtio_blk_guest.c, on the tests/guests runtime and its virtio-mmio driver) runs on
``-M microvm,acpi=off`` with both virtio-mmio versions, polling the used ring
or sleeping until the PIC interrupts, or on the default microvm sleeping until
the second I/O APIC delivers GSI 24+i, with direct or indirect descriptors,
with or without the event index. Each run is checked the way a user would:
the serial output (line for line QEMU's) and exit status, ``qemu-img check``
on the qcow2 image, and the bytes the guest wrote read back with qemu-io.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from guests.build import run_guest

EMULATORS = ("qemu", "arctern")
#: The microvm options for a mode's first word: the PIC with acpi=off; the I/O APICs
#: on the default machine (GSI 24+i) and with ioapic2=off (GSI 16+i).
MACHINE = {"poll": "acpi=off", "irq": "acpi=off", "ioapic": "", "ioapic16": "ioapic2=off"}
SIGNATURE = "ARCTERN-DISK-SIGNATURE"
SECTOR = 512


@pytest.fixture
def disks(tmp_path) -> dict[str, Path]:
    return make_disks(tmp_path)


@pytest.fixture(scope="module")
def qemu_output(virtio_blk_kernel, tmp_path_factory):
    """QEMU's serial output for a mode and transport version, run once on its own disks."""
    cache: dict[tuple[str, bool], str] = {}

    def get(mode: str, legacy: bool) -> str:
        if (mode, legacy) not in cache:
            images = make_disks(tmp_path_factory.mktemp("reference"))
            cache[mode, legacy] = run("qemu", virtio_blk_kernel, images, mode, legacy)[0]
        return cache[mode, legacy]

    return get


def make_disks(directory: Path) -> dict[str, Path]:
    images = {"qcow2": directory / "disk0.qcow2", "raw": directory / "disk1.raw"}
    for fmt, size in (("qcow2", "4M"), ("raw", "2M")):
        path = images[fmt]
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
        qemu_io(path, fmt, f"write -P 0x55 {SECTOR} {SECTOR}")  # data the guest must keep
    # An MBR whose partition ends on a 4-head, 32-sector cylinder: QEMU derives the
    # geometry the guest sees in the config space from it.
    mbr = bytearray(SECTOR)
    mbr[0x1BE : 0x1BE + 16] = struct.pack("<8BII", 0x80, 0, 1, 0, 0x83, 3, 32, 31, 32, 4064)
    mbr[510:512] = b"\x55\xaa"
    with open(images["raw"], "r+b") as f:
        f.write(mbr)
    # A signature the guest reads from sector 0, one byte-pattern write per character.
    qemu_io(
        images["qcow2"], "qcow2", *(f"write -P {ord(c)} {i} 1" for i, c in enumerate(SIGNATURE))
    )
    return images


def qemu_io(path: Path, fmt: str, *commands: str) -> str:
    args = [arg for command in commands for arg in ("-c", command)]
    result = subprocess.run(
        ["qemu-io", "-f", fmt, *args, str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "failed" not in result.stdout, result.stdout + result.stderr
    return result.stdout


def run(emulator: str, kernel: Path, disks: dict[str, Path], mode: str, legacy: bool):
    """(serial output, exit status) of the guest on the two disks."""
    args = [
        "-drive",
        f"file={disks['qcow2']},format=qcow2,if=none,id=d0",
        "-device",
        "virtio-blk-device,drive=d0,serial=DISK-QCOW2",
        "-drive",
        f"file={disks['raw']},format=raw,if=none,id=d1",
        "-device",
        "virtio-blk-device,drive=d1,serial=DISK-RAW",
    ]
    if not legacy:
        args += ["-global", "virtio-mmio.force-legacy=false"]
    return run_guest(emulator, kernel, *args, append=mode, machine_options=MACHINE[mode.split()[0]])


@pytest.mark.parametrize("emulator", EMULATORS)
@pytest.mark.parametrize(
    "mode",
    ["poll", "irq", "poll indirect", "irq indirect event", "ioapic", "ioapic event", "ioapic16"],
)
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
def test_guest_driver_reads_and_writes_both_disks(
    virtio_blk_kernel, disks, qemu_output, emulator, mode, legacy
):
    output, status = run(emulator, virtio_blk_kernel, disks, mode, legacy)
    lines = output.splitlines()
    assert status == 1, output  # isa-debug-exit: the guest reported success (0 << 1 | 1)
    assert lines == qemu_output(mode, legacy).splitlines()  # line for line what QEMU prints
    kind = mode.split()[0]
    interrupts = "interrupts through the I/O APIC" if "ioapic" in kind else "interrupts"
    assert lines[0] == "virtio-blk guest: " + ", ".join(
        ["polling" if kind == "poll" else interrupts]
        + ["indirect descriptors"] * ("indirect" in mode)
        + ["event index"] * ("event" in mode)
    )
    version = 1 if legacy else 2
    features = "31006ed4" if legacy else "30006e54"  # the low feature word QEMU 7.2 offers
    # The first -device lands on the highest transport: slot 7 on ISA IRQ 12 with
    # acpi=off, slot 23 on GSI 47 (the second I/O APIC's last pin) by default, slot 7
    # on GSI 23 (the first I/O APIC's last pin) with ioapic2=off.
    slot, irq = {"ioapic": (23, 47), "ioapic16": (7, 23)}.get(kind, (7, 12))
    assert (
        f"disk0: slot {slot} irq {irq} version {version} features {features} capacity 8192"
        " chs 8/16/63" in lines
    )
    assert (
        f"disk1: slot {slot - 1} irq {irq - 1} version {version} features {features}"
        " capacity 4096 chs 32/4/32" in lines
    )
    assert "disk0: id 'DISK-QCOW2'" in lines and "disk1: id 'DISK-RAW'" in lines
    assert f"disk0: sector 0 '{SIGNATURE}'" in lines
    assert "disk0: write, flush, read back ok; kicks 7, suppressed 0" in lines
    assert "disk1: write, flush, read back ok; kicks 7, suppressed 0" in lines
    if "poll" not in mode:
        assert "interrupts: 14" in lines  # one per request
    assert lines[-1] == "done"

    check = subprocess.run(
        ["qemu-img", "check", "-f", "qcow2", str(disks["qcow2"])], capture_output=True, text=True
    )
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout
    for n, (fmt, sectors) in enumerate((("qcow2", 8192), ("raw", 4096))):
        path = disks[fmt]
        pattern = bytes((0x40 + n + i * 7) & 0xFF for i in range(4096))
        dumped = qemu_io(path, fmt, f"read -v {8 * SECTOR} 4096")
        assert _hexdump_bytes(dumped) == pattern
        qemu_io(path, fmt, f"read -P 0x55 {SECTOR} {SECTOR}")  # untouched by the guest
        last = _hexdump_bytes(qemu_io(path, fmt, f"read -v {(sectors - 1) * SECTOR} 32"))
        assert last.startswith(b"written by the guest\0" + str(n).encode())


def _hexdump_bytes(text: str) -> bytes:
    """The bytes of qemu-io's ``read -v`` dump."""
    out = bytearray()
    for line in text.splitlines():
        head, sep, _rest = line.partition(":  ")
        if not sep or not all(c in "0123456789abcdef" for c in head):
            continue
        out += bytes.fromhex(_rest[:47].replace(" ", ""))
    return bytes(out)


@pytest.mark.parametrize("discard", ["ignore", "unmap"])
def test_discard_and_write_zeroes_match_qemu(virtio_blk_kernel, tmp_path, discard):
    """DISCARD and WRITE_ZEROES (with UNMAP) from the guest: what it reads back, and the
    disks left behind, are QEMU's; with discard=ignore a discarded cluster keeps its data."""
    runs = {}
    for emulator in EMULATORS:
        (tmp_path / emulator).mkdir()
        disks = make_disks(tmp_path / emulator)
        args = []
        for n, fmt in enumerate(("qcow2", "raw")):
            args += ["-drive", f"file={disks[fmt]},format={fmt},if=none,id=d{n},discard={discard}"]
            args += ["-device", f"virtio-blk-device,drive=d{n}"]
        runs[emulator] = (
            run_guest(
                emulator,
                virtio_blk_kernel,
                *args,
                append="poll discard",
                machine_options="acpi=off",
            ),
            disks,
        )
    (output, status), qemu_disks = runs["qemu"]
    assert status == 1 and output.endswith("done\n"), output
    kept = "zeroes" if discard == "unmap" else "the old data"
    assert f"disk0: discard status 0, reads back {kept}" in output.splitlines()
    assert "disk1: write-zeroes status 0, reads back zeroes" in output.splitlines()
    (arctern_output, arctern_status), arctern_disks = runs["arctern"]
    assert (arctern_output.splitlines(), arctern_status) == (output.splitlines(), status)
    check = subprocess.run(
        ["qemu-img", "check", "-f", "qcow2", str(arctern_disks["qcow2"])],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout
    for fmt in ("qcow2", "raw"):
        compare = subprocess.run(
            ["qemu-img", "compare", "-f", fmt, "-F", fmt]
            + [str(arctern_disks[fmt]), str(qemu_disks[fmt])],
            capture_output=True,
            text=True,
        )
        assert compare.returncode == 0, compare.stdout + compare.stderr  # identical contents
