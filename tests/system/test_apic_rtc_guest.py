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

from guests.build import run_guest

HERE = Path(__file__).parent


def test_apic_ioapic_and_rtc_match_qemu(guest_elf, run_guest_both):
    runs = run_guest_both(guest_elf(HERE / "apic_rtc_guest.c"))
    output, status = runs["qemu"]
    assert status == 1 and output.endswith("done\n"), output
    assert " no\n" not in output and " no," not in output, output  # all awaited events came
    assert "lapic lvt lint0  00010000" in output  # QEMU's microvm leaves LINT0 masked
    assert runs["arctern"][1] == status, runs["arctern"][0]
    assert runs["arctern"][0].splitlines() == output.splitlines()


def test_lapic_timer_ticks_under_icount_match_qemu(guest_elf):
    """Under -icount both emulators count the same instructions between LAPIC timer ticks.

    (The RTC's ticks are only compared run to run: QEMU's RTC follows the host clock
    by default, Arctern's the virtual clock.)
    """
    elf = guest_elf(HERE / "apic_rtc_guest.c")
    args = ("-icount", "shift=5,sleep=off")
    qemu = run_guest("qemu", elf, *args, append="spins")
    arctern = [run_guest("arctern", elf, *args, append="spins") for _ in range(2)]
    assert arctern[0] == arctern[1] and arctern[0][1] == 1, arctern
    lapic = [line for line in qemu[0].splitlines() if line.startswith("lapic tick")]
    assert len(lapic) == 3 and int(lapic[1].split(": ")[1].split()[0]) > 1000
    assert [line for line in arctern[0][0].splitlines() if line.startswith("lapic")] == lapic
    rtc = [line for line in arctern[0][0].splitlines() if line.startswith("rtc tick")]
    assert len(rtc) == 3  # 8192 Hz: 3815 instructions a period, ~670 spins
    assert all(600 < int(line.split(": ")[1].split()[0]) < 1000 for line in rtc[1:]), rtc
