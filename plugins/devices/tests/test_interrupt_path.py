"""Interrupts end to end as microvm wires them: device -> GSI line -> 8259 pair -> CPU INTR."""

import pytest
from device_harness import advance
from ring_driver import MMIODriver

from arctern.machine.chardev import MemoryChardev

SLOT7 = 0xFEB00000 + 7 * 0x200


@pytest.fixture
def board(machine):
    pic = machine.create_device("pic-pair")
    for n in range(16):
        machine.gsi(n).connect(pic.input(n))
    pic.intr_level = []
    pic.intr.connect(pic.intr_level.append)
    for port, icws in ((0x20, (0x11, 0x20, 0x04, 0x01)), (0xA0, (0x11, 0x28, 0x02, 0x01))):
        machine.io.write(port, 1, icws[0])
        for icw in icws[1:]:
            machine.io.write(port + 1, 1, icw)
    machine.io.write(0x21, 1, 0xFB)
    machine.io.write(0xA1, 1, 0xEF)  # IRQ 12 only
    return pic


def test_virtio_completion_interrupts_through_the_slave_pic(machine, board, raw_drive):
    machine.create_device("virtio-mmio", addr=SLOT7, irq=12)
    machine.create_device("virtio-blk-device", drive=raw_drive)
    drv = MMIODriver(machine.address_space, SLOT7)
    ring = drv.init(0, 8, 0x100000)
    ring.add([bytes(16)], [512, 1])
    drv.kick()
    assert board.intr_level[-1] is True
    assert board.acknowledge() == 0x2C  # vector base 0x28 + IRQ 12 - 8
    drv.ack()  # the driver acknowledges the device, the level drops
    machine.io.write(0xA0, 1, 0x20)
    machine.io.write(0x20, 1, 0x20)
    assert board.intr_level[-1] is False


def test_serial_input_interrupts_on_irq4(machine, board):
    chardev = MemoryChardev()
    machine.add_serial(chardev)
    machine.create_device("isa-serial", chardev="serial0")
    machine.io.write(0x21, 1, 0xEB)  # unmask IRQ 4 (and the cascade)
    machine.io.write(0x3F9, 1, 0x01)  # IER: received data
    chardev.feed(b"k")
    chardev.poll()
    assert board.intr_level[-1] is True and board.acknowledge() == 0x24
    assert machine.io.read(0x3F8, 1) == ord("k")
    machine.io.write(0x20, 1, 0x20)
    assert board.intr_level[-1] is False


def test_pit_channel0_ticks_irq0(machine, board):
    machine.create_device("i8254").reset()
    machine.io.write(0x21, 1, 0xFA)  # unmask IRQ 0
    machine.io.write(0x43, 1, 0x34)
    machine.io.write(0x40, 1, 0xA9)  # 1193 ticks: about 1 ms
    machine.io.write(0x40, 1, 0x04)
    advance(machine, 1_100_000)
    assert board.acknowledge() == 0x20
