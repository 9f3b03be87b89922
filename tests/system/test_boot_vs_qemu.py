"""Guests see the same boot and end the same way under arctern-system as under QEMU.

Each guest (C, built with tests/guests) runs under qemu-system-i386 -M microvm
and under arctern-system with the same options; serial output and exit status
must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from guests.build import run_guest

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def multiboot_info(guest_elf) -> Path:
    return guest_elf(HERE / "multiboot_info.c")


@pytest.fixture(scope="module")
def power_guest(guest_elf) -> Path:
    return guest_elf(HERE / "power_guest.c")


def assert_same(runs: dict[str, tuple[str, int]]) -> tuple[str, int]:
    qemu, arctern = runs["qemu"], runs["arctern"]
    assert arctern[1] == qemu[1], f"status {arctern[1]} != QEMU's {qemu[1]}\n{arctern[0]}"
    assert arctern[0].splitlines() == qemu[0].splitlines()
    return qemu


@pytest.mark.parametrize(
    "args, append, machine_options",
    [
        ((), None, ""),
        (("-m", "64"), "console=ttyS0 quiet", "acpi=off"),
        (("-m", "1000M"), "", ""),
    ],
)
def test_multiboot_entry_and_info_block_match_qemu(
    multiboot_info, run_guest_both, args, append, machine_options
):
    output, status = assert_same(
        run_guest_both(multiboot_info, *args, append=append, machine_options=machine_options)
    )
    assert status == 1 and output.startswith("magic 2badb002 info 0x9500\n")
    assert f"'{multiboot_info} {append or ''}'" in output


def test_multiboot_modules_are_laid_out_as_qemu_does(multiboot_info, run_guest_both, tmp_path):
    small, odd = tmp_path / "small.bin", tmp_path / "odd,name.bin"
    small.write_bytes(b"ABCDEFGH")
    odd.write_bytes(bytes(range(256)) * 20 + b"\x01\x02\x03")  # 5123 bytes: not page-sized
    initrd = f"{small} arg1 arg2,{str(odd).replace(',', ',,')}"
    output, status = assert_same(run_guest_both(multiboot_info, "-initrd", initrd, append="k"))
    assert status == 1 and "mods 2 at 00112000" in output
    assert f"string at 00112020 '{small} arg1 arg2' reserved 0 first bytes 41 42 43" in output
    assert f"'{odd}' reserved 0 first bytes 00 01 02" in output


def test_missing_module_is_qemus_error(multiboot_info, run_guest_both):
    runs = run_guest_both(multiboot_info, "-initrd", "/nonexistent/module.bin")
    assert runs["arctern"][1] == runs["qemu"][1] == 1


def test_printf_formatter_and_exit_code(guest_elf, run_guest_both):
    output, status = assert_same(run_guest_both(guest_elf(HERE / "printf_guest.c")))
    assert status == (6 << 1) | 1
    assert "width [   42] [42   ] [-0042] [0x00ab] [   ab] [ab   ] [  z]" in output
    assert "magic 0x2badb002 2badb002 2BADB002" in output
    assert "snprintf 22 'truncated-12345'" in output


@pytest.mark.parametrize(
    "append, args, machine_options, status",
    [
        ("poweroff", (), "", 0),  # ACPI GED sleep register
        ("poweroff", (), "acpi=off", 11),  # no GED: the guest carries on and exits 5
        ("reset", ("-no-reboot",), "", 0),
        ("triple", ("-no-reboot",), "acpi=off", 0),
        ("exit 7", (), "", 15),
    ],
)
def test_machine_ends_as_under_qemu(
    power_guest, run_guest_both, append, args, machine_options, status
):
    runs = run_guest_both(power_guest, *args, append=append, machine_options=machine_options)
    assert assert_same(runs)[1] == status


def test_timer_interrupts_wake_a_halted_guest(guest_elf, run_guest_both):
    """PIT -> i8259 pair -> CPU: a HLT loop counts 1 kHz ticks in an interrupt handler."""
    runs = run_guest_both(guest_elf(HERE / "ticks_guest.c"), append="hz=1000 count=50")
    output, status = assert_same(runs)
    assert status == 1 and "ticks >=50, woken yes, IF in handler 0" in output


def test_flat_binary_kernel_loads_by_its_header_address_fields(guest_elf, run_guest_both):
    flat = guest_elf(
        HERE / "flat_kernel.S",
        cflags=["-Wl,-Ttext=0x100000", "-Wl,--oformat=binary", "-Wl,-e,image_start"],
        runtime=False,
    )
    output, status = assert_same(run_guest_both(flat, append="hello flat"))
    assert status == 1 and output.endswith(f"bss zeroed\ncmdline: {flat} hello flat\n")


def test_icount_makes_timing_dependent_output_repeatable(guest_elf):
    """With -icount, guest time counts instructions: the same run gives the same counts."""
    elf = guest_elf(HERE / "timing_guest.c")
    runs = [
        run_guest("arctern", elf, "-icount", "shift=5,sleep=off", machine_options="acpi=off")
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0][1] == 1
    spins = int(runs[0][0].split(": ")[1])
    assert spins > 1000  # 10 ms of guest time at 32 ns an instruction: ~300000 instructions
