"""A guest probes the default microvm's local APIC, I/O APICs and RTC; Arctern must print
what QEMU prints.

The guest (apic_rtc_guest.c) prints reset values, register behaviour and interrupt
counts that do not depend on timing: self-IPIs and the TPR, the LAPIC timer in
one-shot and periodic mode, the I/O APIC's redirection entries and remote IRR,
the RTC's formats, seconds rollover into a new century, alarm and periodic and
update-ended interrupts routed through the I/O APIC.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def test_apic_ioapic_and_rtc_match_qemu(guest_elf, run_guest_both):
    runs = run_guest_both(guest_elf(HERE / "apic_rtc_guest.c"))
    output, status = runs["qemu"]
    assert status == 1 and output.endswith("done\n"), output
    assert " no\n" not in output and " no," not in output, output  # all awaited events came
    assert "lapic lvt lint0  00010000" in output  # QEMU's microvm leaves LINT0 masked
    assert runs["arctern"][1] == status, runs["arctern"][0]
    assert runs["arctern"][0].splitlines() == output.splitlines()
