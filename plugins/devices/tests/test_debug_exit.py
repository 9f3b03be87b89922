"""isa-debug-exit: a guest write ends the run with status (value << 1) | 1, as QEMU."""

import pytest


@pytest.mark.parametrize("value, status", [(0, 1), (0x10, 0x21), (0x7F, 0xFF)])
def test_write_requests_exit_with_qemu_status(machine, value, status):
    machine.create_device("isa-debug-exit", iobase=0xF4, iosize=1)
    assert machine.exit_status is None
    machine.io.write(0xF4, 1, value)
    assert machine.exit_request and machine.exit_status == status


def test_default_ports_and_reads(machine):
    machine.create_device("isa-debug-exit")
    assert machine.io.read(0x502, 1) == 0xFF  # second port of the default iosize 2
    machine.io.write(0x502, 1, 3)
    assert machine.exit_status == 7
