"""A guest probes the UART, PIC and PIT registers; Arctern must print what QEMU prints.

The guest (devices_guest.c) prints only timing-independent facts: register
values after defined sequences, and yes/no for events it waits for (character
timeout, IRQ 0 requested, the counter moving).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def test_device_registers_match_qemu(guest_elf, run_guest_both):
    runs = run_guest_both(guest_elf(HERE / "devices_guest.c"), machine_options="acpi=off")
    output, status = runs["qemu"]
    assert status == 1 and output.endswith("done\n"), output
    assert " no\n" not in output, output  # every awaited event happened under QEMU
    assert runs["arctern"][1] == status, runs["arctern"][0]
    assert runs["arctern"][0].splitlines() == output.splitlines()
