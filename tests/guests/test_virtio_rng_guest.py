"""A guest with its own virtio-rng driver reads random bytes, under QEMU and arctern-system.

The guest (virtio_rng_guest.c with the runtime's virtio_mmio.c) runs on the
default microvm and with ``acpi=off``, on the legacy and the modern transport;
the serial output and exit status must be QEMU's line for line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guests.rng_guest import ENTROPY_LINES, SOURCES


@pytest.fixture(scope="module")
def rng_kernel(guest_elf) -> Path:
    return guest_elf(SOURCES)


@pytest.mark.parametrize("machine_options", ["", "acpi=off"])
@pytest.mark.parametrize("legacy", [True, False])
def test_guest_reads_random_bytes_like_under_qemu(
    rng_kernel, run_guest_both, machine_options, legacy
):
    args = ["-device", "virtio-rng-device"]
    if not legacy:
        args += ["-global", "virtio-mmio.force-legacy=false"]
    runs = run_guest_both(rng_kernel, *args, machine_options=machine_options, timeout=60)
    output, status = runs["arctern"]
    assert status == 1, output  # exit(0)
    lines = output.splitlines()
    slot = 23 if not machine_options else 7
    assert lines[0].startswith(f"virtio-rng: slot {slot} version {1 if legacy else 2} ")
    assert lines[1:] == ENTROPY_LINES
    assert runs["arctern"] == runs["qemu"]


def test_rate_limit_holds_a_request_until_the_next_period(rng_kernel, run_guest_both):
    runs = run_guest_both(
        rng_kernel,
        "-device",
        "virtio-rng-device,max-bytes=32,period=50",
        append="limit",
        timeout=60,
    )
    output, status = runs["arctern"]
    assert status == 1, output
    assert output.splitlines()[1:] == [
        "64-byte request: 32 bytes this period",
        "waiting for the next period",
        "16-byte request: 16 bytes, differ from the first",
        "done",
    ]
    assert runs["arctern"] == runs["qemu"]


@pytest.mark.parametrize("legacy", [True, False])
def test_common_feature_properties_change_the_offer_as_in_qemu(rng_kernel, run_guest_both, legacy):
    args = ["-device", "virtio-rng-device,event_idx=off,any_layout=off,notify_on_empty=off"]
    if not legacy:
        args += ["-global", "virtio-mmio.force-legacy=false"]
    runs = run_guest_both(rng_kernel, *args, timeout=60)
    output, status = runs["arctern"]
    assert status == 1, output
    # only INDIRECT_DESC (bit 28) is left of the low 32 feature bits
    assert output.splitlines()[0].endswith(" features 10000000 queue max 1024")
    assert runs["arctern"] == runs["qemu"]
