"""QEMU's ``microvm`` machine for i386: a minimal board with virtio-mmio, booting Multiboot ELFs.

The layout follows QEMU 7.2 (hw/i386/microvm.c), since guests hard-code it:

* the CPU's local APIC at 0xfee00000 (LINT0 masked at reset: a guest that wants
  the PIC unmasks it as ExtINT), the I/O APIC at 0xfec00000 on GSIs 0-23 and,
  with ACPI (unless ``ioapic2=off``) a second one at 0xfec10000 on GSIs 24-47;
* i8259 PIC pair on ports 0x20/0xa0 (ISA IRQs = GSIs 0-15, which also reach the
  first I/O APIC), i8254 PIT on 0x40 (IRQ 0);
* the MC146818 RTC on ports 0x70/0x71, IRQ 8 (``rtc=off`` removes it), with
  the memory size in its CMOS bytes as QEMU's microvm_set_rtc stores it;
* COM1 16550 at 0x3f8, IRQ 4, on the first ``-serial`` backend;
* virtio-mmio transports at 0xfeb00000 + 0x200*i: with the second I/O APIC (the
  default) 24 of them on GSI 24+i; with ``ioapic2=off`` 8 on GSI 16+i; with
  ``acpi=off`` (no second I/O APIC then) 8 on ISA IRQ 5+i.
  A ``-device virtio-blk-device`` takes the highest free slot, as in QEMU;
* with ACPI, the GED's sleep control register at 0xfea00200: writing
  SLP_EN|SLP_TYP=5 (0x34) powers the machine off (exit status 0) and the
  reset register at 0xfea00202 resets it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import ClassVar

from arctern.errors import MachineError
from arctern.machine.device import Device, prop_bool, prop_choice
from arctern.machine.image_file import map_image_file
from arctern.machine.irq import IRQHandler
from arctern.machine.machine import Machine, MachineType
from arctern.qemu_opts import split_commas

from .multiboot import BOOTLOADER_MAGIC, INFO_ADDR, Module, load_multiboot

log = logging.getLogger(__name__)

VIRTIO_MMIO_BASE = 0xFEB00000
VIRTIO_MMIO_STRIDE = 0x200
GED_REGS_BASE = 0xFEA00200
GED_SLEEP_CTL, GED_RESET = 0, 2  # register offsets (1, sleep status, reads 0)
SLP_EN = 0x20
SLP_TYP_S5 = 5
GED_RESET_VALUE = 0x42
MAX_RAM = 3 << 30  # what lies below the 32-bit PCI hole; no RAM above 4 GiB
ISA_IRQS = 16
PIC_CASCADE = 2
IOAPIC_BASE, IOAPIC2_BASE = 0xFEC00000, 0xFEC10000
IOAPIC_PINS = 24
KiB, MiB = 1 << 10, 1 << 20


def _auto(default: str = "auto"):
    return prop_choice(default, ("on", "off", "auto"))


class GEDRegisters:
    """The ACPI Generic Event Device's sleep and reset registers (an MMIO handler)."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def mmio_read(self, offset: int, size: int) -> int:
        return 0  # sleep status: never asleep

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if offset == GED_SLEEP_CTL and value & SLP_EN:
            if (value >> 2) & 7 == SLP_TYP_S5:
                log.info("guest powered off through the ACPI GED")
                self.machine.shutdown()
        elif offset == GED_RESET and value & 0xFF == GED_RESET_VALUE:
            self.machine.request_reset()


class Microvm(MachineType):
    name: ClassVar[str] = "microvm"
    description: ClassVar[str] = "microvm (i386)"
    arch: ClassVar[str] = "i386"
    default_cpu: ClassVar[str] = "qemu32"
    default_ram_size: ClassVar[int] = 128 << 20
    max_ram_size: ClassVar[int | None] = MAX_RAM
    options = {
        "acpi": _auto(),
        "pic": _auto(),
        "pit": _auto(),
        "rtc": _auto(),
        "ioapic2": _auto(),
        "pcie": _auto("off"),
        "isa-serial": prop_bool(True),
        "auto-kernel-cmdline": prop_bool(True),
        "x-option-roms": prop_bool(True),
        "graphics": prop_bool(False),
    }

    @property
    def acpi(self) -> bool:
        return self.opts["acpi"] != "off"

    @property
    def ioapic2(self) -> bool:
        """The second I/O APIC: only with ACPI (which describes it), unless ``ioapic2=off``."""
        return self.acpi and self.opts["ioapic2"] != "off"

    def virtio_layout(self) -> tuple[int, int]:
        """(number of transports, GSI of the first) for this configuration, as QEMU:
        the second I/O APIC's pins, else the first one's pins 16-23 with ACPI, else
        ISA IRQs 5-12."""
        if self.ioapic2:
            return IOAPIC_PINS, IOAPIC_PINS
        return (8, ISA_IRQS) if self.acpi else (8, 5)

    def build(self, machine: Machine) -> None:
        if self.opts["pcie"] == "on":
            raise MachineError("microvm: pcie=on is not supported")
        cpu = machine.create_cpu()
        lapic = machine.create_device("apic")
        lapic.intr.connect(cpu.set_irq)
        cpu.irq_ack = lapic.acknowledge
        ioapic = self._build_ioapics(machine, lapic)
        count, first_gsi = self.virtio_layout()
        for slot in range(count):
            machine.create_device(
                "virtio-mmio",
                addr=VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_STRIDE,
                irq=first_gsi + slot,
            )
        if self.acpi:
            machine.address_space.add_mmio(GED_REGS_BASE, 3, GEDRegisters(machine), "acpi-ged")
        if self.opts["pic"] != "off":
            pic = machine.create_device("pic-pair")
            for irq in range(ISA_IRQS):
                if irq != PIC_CASCADE:
                    # ISA IRQs reach the PIC and the first I/O APIC alike (QEMU's gsi_handler).
                    machine.gsi(irq).connect(_both(pic.input(irq), ioapic.input(irq)))
            pic.intr.connect(lapic.pic_input)
            lapic.pic_acknowledge = pic.acknowledge
        if self.opts["pit"] != "off":
            # No port 0x61 (PC speaker, channel 2 gate) on microvm: reads there give 0xff.
            machine.create_device("i8254", iobase=0x40, irq=0, **{"gate-port": 0})
        if self.opts["rtc"] != "off":
            _store_memory_size(machine.create_device("mc146818", iobase=0x70, irq=8), machine)
        if self.opts["isa-serial"] and machine.serial_hds:
            machine.create_device("isa-serial", iobase=0x3F8, irq=4, chardev=machine.serial_hds[0])

    def _build_ioapics(self, machine: Machine, lapic: Device) -> Device:
        """GSIs 0-23 on the first I/O APIC, 24-47 on the second; both deliver to the LAPIC.

        Returns the first, whose inputs 0-15 the PIC shares.
        """
        bases = (IOAPIC_BASE, IOAPIC2_BASE) if self.ioapic2 else (IOAPIC_BASE,)
        for number, base in enumerate(bases):
            ioapic = machine.create_device("ioapic", addr=base)
            ioapic.deliver = lapic.deliver_irq
            lapic.eoi_listeners.append(ioapic.eoi)
            for pin in range(IOAPIC_PINS):
                machine.gsi(number * IOAPIC_PINS + pin).connect(ioapic.input(pin))
        return machine.find_device("ioapic")[0]

    @classmethod
    def builtin_guest(cls, purpose: str) -> Path | None:
        """The prebuilt guests in guests/ (their C sources and build.py are next to them)."""
        if purpose == "migration-demo":
            return Path(__file__).with_name("guests") / "migration_demo.elf"
        return None

    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        with contextlib.ExitStack() as files:
            data = files.enter_context(map_image_file(path))
            modules = [
                _open_module(files, text) for text in split_commas(machine.initrd or "") if text
            ]
            entry = load_multiboot(
                machine.ram, data, path, cmdline, modules, initrd=machine.initrd or ""
            )
        for cpu in machine.cpus:
            cpu.enter_flat_protected_mode(entry, BOOTLOADER_MAGIC, INFO_ADDR)


def _both(first: IRQHandler, second: IRQHandler) -> IRQHandler:
    def handler(level: bool) -> None:
        first(level)
        second(level)

    return handler


def _store_memory_size(rtc: Device, machine: Machine) -> None:
    """The RAM size in the RTC's CMOS bytes, as QEMU's microvm_set_rtc puts it there."""
    size = machine.ram.size
    base = min(size // KiB, 640)
    extended = min(max(size - MiB, 0) // KiB, 0xFFFF)
    above_16m = min(max(size - 16 * MiB, 0) // (64 * KiB), 0xFFFF)
    for index, value in (
        (0x15, base), (0x16, base >> 8),
        (0x17, extended), (0x18, extended >> 8), (0x30, extended), (0x31, extended >> 8),
        (0x34, above_16m), (0x35, above_16m >> 8),
        (0x5B, 0), (0x5C, 0), (0x5D, 0),  # no RAM above 4 GiB on this machine
    ):  # fmt: skip
        rtc.set_cmos(index, value)


def _open_module(files: contextlib.ExitStack, text: str) -> Module:
    """A module (``-initrd`` item ``FILE ARGS``), its file kept open by ``files``."""
    path = text.split(" ", 1)[0]
    try:
        data = files.enter_context(map_image_file(path))
    except MachineError:
        raise MachineError(f"Failed to open file '{path}'") from None
    return Module(text, data)
