"""The microvm board: QEMU 7.2's layout (transports, IRQs, PIC, PIT, COM1, GED) and its wiring."""

from __future__ import annotations

import subprocess

import pytest
from arctern_target_i386.microvm import (
    GED_REGS_BASE,
    IOAPIC2_BASE,
    IOAPIC_BASE,
    VIRTIO_MMIO_BASE,
)

from arctern.errors import MachineError
from arctern.machine import Machine, MemoryChardev
from arctern.machine.launch import DeviceConfig, DriveConfig, MachineConfig, launch

MAGIC_VALUE, VERSION, DEVICE_ID = 0x000, 0x004, 0x008
VIRTIO_ID_BLOCK = 2
LAPIC_BASE = 0xFEE00000


def board(**options) -> Machine:
    machine = Machine("microvm", options=options)
    machine.add_serial(MemoryChardev())
    machine.build()
    return machine


def transports(machine: Machine) -> list[tuple[int, int]]:
    return [(d.props["addr"], d.props["irq"]) for d in machine.find_device("virtio-mmio")]


def test_default_board_has_24_transports_on_gsi_24_up():
    machine = board()
    assert transports(machine) == [(VIRTIO_MMIO_BASE + 0x200 * i, 24 + i) for i in range(24)]
    last = VIRTIO_MMIO_BASE + 0x200 * 23
    assert machine.address_space.read(last + MAGIC_VALUE, 4) == 0x74726976
    assert machine.address_space.read(last + 0x200 + MAGIC_VALUE, 4) == 0  # past the last one


def test_acpi_off_board_has_8_transports_on_isa_irq_5_up():
    machine = board(acpi="off")
    assert transports(machine) == [(VIRTIO_MMIO_BASE + 0x200 * i, 5 + i) for i in range(8)]
    assert machine.address_space.read(VIRTIO_MMIO_BASE + 0x200 * 8, 4) == 0


@pytest.mark.parametrize("acpi, slot", [("on", 23), ("off", 7)])
def test_first_virtio_blk_device_takes_the_highest_slot(tmp_path, acpi, slot):
    image = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(image), "1M"], check=True)
    machine = launch(
        MachineConfig(
            "microvm",
            machine_options={"acpi": acpi},
            drives=[DriveConfig(str(image), format="raw", id="d0")],
            devices=[DeviceConfig("virtio-blk-device", {"drive": "d0"})],
            incoming=True,  # no kernel needed
        )
    )
    try:
        base = VIRTIO_MMIO_BASE + 0x200 * slot
        assert machine.address_space.read(base + DEVICE_ID, 4) == VIRTIO_ID_BLOCK
        assert machine.address_space.read(base - 0x200 + DEVICE_ID, 4) == 0
        assert machine.address_space.read(base + VERSION, 4) == 1  # legacy, as QEMU 7.2
    finally:
        machine.close()


def test_com1_on_the_first_serial_backend_and_irq_4_through_the_pic():
    machine = board()
    (serial,) = machine.find_device("isa-serial")
    assert serial.props["iobase"] == 0x3F8 and serial.props["irq"] == 4
    cpu = machine.cpus[0]
    machine.power_on()
    machine.address_space.write(LAPIC_BASE + 0x350, 4, 0x700)  # LINT0: ExtINT, unmasked
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xEF)):
        machine.io.write(port, 1, value)  # ICW1-4: vectors from 0x20; then unmask IRQ 4 only
    machine.gsi(3).raise_()
    assert not cpu.irq_level
    machine.gsi(4).raise_()
    assert cpu.irq_level
    assert cpu.irq_ack() == 0x20 + 4


def test_pic_reaches_the_cpu_only_through_an_unmasked_lint0():
    machine = board()
    cpu = machine.cpus[0]
    machine.power_on()
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xEF)):
        machine.io.write(port, 1, value)
    machine.gsi(4).raise_()
    assert not cpu.irq_level and cpu.irq_ack() is None  # LINT0 masked at reset, as QEMU
    machine.address_space.write(LAPIC_BASE + 0x350, 4, 0x700)
    assert cpu.irq_level and cpu.irq_ack() == 0x24


def test_ioapic_routes_gsi_24_up_to_the_local_apic():
    machine = board()
    cpu = machine.cpus[0]
    machine.power_on()
    slot, vector = 23, 0x51
    write = machine.address_space.write
    write(LAPIC_BASE + 0xF0, 4, 0x1FF)  # software enable
    write(IOAPIC2_BASE, 4, 0x10 + 2 * slot)
    write(IOAPIC2_BASE + 0x10, 4, vector)  # fixed, edge, physical destination 0, unmasked
    machine.gsi(24 + slot).raise_()
    assert cpu.irq_level and cpu.irq_ack() == vector
    assert not cpu.irq_level


def test_isa_irqs_reach_both_the_pic_and_the_first_ioapic():
    machine = board()
    cpu = machine.cpus[0]
    machine.power_on()
    write = machine.address_space.write
    write(LAPIC_BASE + 0xF0, 4, 0x1FF)
    write(IOAPIC_BASE, 4, 0x10 + 2 * 2)  # pin 2: where QEMU's IO-APIC takes ISA IRQ 0
    write(IOAPIC_BASE + 0x10, 4, 0x30)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE)):
        machine.io.write(port, 1, value)  # the PIC takes IRQ 0 as well (LINT0 masked)
    machine.gsi(0).raise_()
    assert cpu.irq_level and cpu.irq_ack() == 0x30
    machine.io.write(0x20, 1, 0x0A)
    assert machine.io.read(0x20, 1) & 1  # the 8259 saw the same edge


@pytest.mark.parametrize(
    "options, ioapics, count, first_irq",
    [
        ({}, 2, 24, 24),
        ({"ioapic2": "off"}, 1, 8, 16),  # the first I/O APIC's pins 16-23
        ({"acpi": "off"}, 1, 8, 5),
        ({"acpi": "off", "ioapic2": "on"}, 1, 8, 5),  # no ACPI, no second I/O APIC (as QEMU)
    ],
)
def test_ioapics_and_transport_irqs_as_qemu(options, ioapics, count, first_irq):
    machine = board(**options)
    found = machine.find_device("ioapic")
    assert [d.props["addr"] for d in found] == [0xFEC00000, 0xFEC10000][:ioapics]
    assert [irq for _addr, irq in transports(machine)] == list(range(first_irq, first_irq + count))


@pytest.mark.parametrize("rtc, present", [("auto", True), ("on", True), ("off", False)])
def test_rtc_option(rtc, present):
    machine = board(rtc=rtc)
    assert bool(machine.find_device("mc146818")) == present
    if present:
        machine.io.write(0x70, 1, 0x34)  # CMOS: memory above 16 MiB in 64 KiB units
        low = machine.io.read(0x71, 1)
        machine.io.write(0x70, 1, 0x35)
        assert low | machine.io.read(0x71, 1) << 8 == (128 - 16) * 16


def test_no_serial_device_without_a_backend_or_with_isa_serial_off():
    assert not Machine("microvm").find_device("isa-serial")
    assert not board(**{"isa-serial": "off"}).find_device("isa-serial")


def test_pit_on_port_0x40_irq_0_and_no_speaker_port():
    machine = board()
    (pit,) = machine.find_device("i8254")
    assert pit.props["iobase"] == 0x40 and pit.props["irq"] == 0
    assert machine.io.read(0x61, 1) == 0xFF
    assert not board(pit="off").find_device("i8254")


def test_ged_sleep_register_powers_off_with_status_0():
    machine = board()
    machine.power_on()
    machine.resume()
    machine.address_space.write(GED_REGS_BASE, 1, 0x20 | (3 << 2))  # S3: not a power-off
    assert not machine.finished
    machine.address_space.write(GED_REGS_BASE, 1, 0x34)
    assert machine.finished and machine.exit_status == 0 and machine.runstate == "shutdown"


def test_ged_reset_register_and_no_ged_without_acpi():
    machine = board(**{"isa-serial": "off"})
    machine.power_on()
    machine.resume()
    machine.address_space.write(GED_REGS_BASE + 2, 1, 0x42)
    assert machine.exit_request and not machine.finished  # reset at the end of the slice
    quiet = board(acpi="off")
    quiet.power_on()
    quiet.resume()
    quiet.address_space.write(GED_REGS_BASE, 1, 0x34)
    assert not quiet.finished


def test_ram_limit_and_unsupported_options_are_one_error():
    with pytest.raises(MachineError, match="at most 3072 MiB"):
        Machine("microvm", ram_size=4 << 30)  # refused before 4 GiB are allocated
    with pytest.raises(MachineError, match="pcie=on"):
        board(pcie="on")
    with pytest.raises(MachineError, match="Parameter 'acpi' expects"):
        board(acpi="maybe")


def test_drive_if_virtio_plugs_a_virtio_blk_device(tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    machine = launch(
        MachineConfig(
            "microvm",
            drives=[DriveConfig(str(image), format="raw", interface="virtio")],
            incoming=True,
        )
    )
    try:
        (disk,) = machine.find_device("virtio-blk-device")
        assert disk.props["drive"] == "virtio0" and "virtio0" in machine.drives
        assert machine.address_space.read(VIRTIO_MMIO_BASE + 0x200 * 23 + DEVICE_ID, 4) == 2
        assert not machine.drives["virtio0"].active  # -incoming: images wait inactive
    finally:
        machine.close()


def test_a_failed_launch_releases_what_it_opened(tmp_path):
    from arctern.block import open_image

    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    config = MachineConfig(
        "microvm",
        drives=[DriveConfig(str(image), format="raw", id="d0")],
        devices=[DeviceConfig("isa-debug-exit", {"iobase": "zz"}, origin="-device x")],
    )  # active image: it holds QEMU's write lock until closed
    with pytest.raises(MachineError, match="^-device x: Parameter 'iobase' expects integer$"):
        launch(config)
    with open_image(str(image), fmt="raw") as backend:  # the write lock was released
        backend.pwrite(0, b"free")
