"""A guest probes the UART, PIC and PIT registers; every emulator must print what QEMU prints.

The guest (guests/devices) prints only timing-independent facts: register values
after defined sequences, and yes/no for events it waits for (character timeout,
IRQ 0 requested, the counter moving). QEMU's run is the reference.
"""

from __future__ import annotations

from pathlib import Path

import guest_tools
import pytest


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Path:
    return guest_tools.build("devices", tmp_path_factory.mktemp("guest"))


@pytest.fixture(scope="module")
def reference(kernel) -> tuple[int, str]:
    status, output = guest_tools.run("qemu", kernel)
    assert status == 1 and output.endswith("done\n"), output
    assert " no\n" not in output, output  # every awaited event happened under QEMU
    return status, output


@pytest.mark.parametrize("emulator", sorted(guest_tools.EMULATORS))
def test_device_registers_match_qemu(kernel, reference, emulator):
    status, output = guest_tools.run(emulator, kernel)
    assert (status, output.splitlines()) == (reference[0], reference[1].splitlines())
