"""ns16550A: registers, FIFOs and trigger levels, interrupts, loopback, bulk output, vmstate."""

import pytest
from arctern_devices.serial import INPUT_QUEUE_LIMIT
from device_harness import advance, destination, migrate_state

from arctern.machine.chardev import open_chardev

COM1 = 0x3F8
RBR = THR = DLL = COM1
IER = DLM = COM1 + 1
IIR = FCR = COM1 + 2
LCR, MCR, LSR, MSR, SCR = COM1 + 3, COM1 + 4, COM1 + 5, COM1 + 6, COM1 + 7


def serial_on_file(machine, path):
    chardev_id = machine.add_serial(open_chardev(f"file:{path}"))
    return machine.create_device("isa-serial", chardev=chardev_id)


@pytest.fixture
def uart(machine, tmp_path):
    dev = serial_on_file(machine, tmp_path / "serial.out")
    dev.out_path = tmp_path / "serial.out"
    return dev


def outb(machine, port, value):
    machine.io.write(port, 1, value)


def inb(machine, port):
    return machine.io.read(port, 1)


def test_reset_values(machine, uart):
    assert inb(machine, IIR) == 0x01
    assert inb(machine, LSR) == 0x60  # THR empty, transmitter empty
    assert inb(machine, MSR) == 0xB0  # DCD, DSR, CTS
    assert inb(machine, MCR) == 0x08  # OUT2
    outb(machine, LCR, 0x80)
    assert (inb(machine, DLL), inb(machine, DLM)) == (0x0C, 0x00)  # 9600 baud


def test_output_reaches_backend_in_one_write(machine, uart, monkeypatch):
    writes = []
    real_write = uart.chardev.write
    monkeypatch.setattr(uart.chardev, "write", lambda data: (writes.append(data), real_write(data)))
    for byte in b"Hello, 16550!\n":
        assert inb(machine, LSR) & 0x20
        outb(machine, THR, byte)
    assert inb(machine, LSR) & 0x60 == 0x60
    assert writes == []  # nothing per byte
    uart.flush_output()
    assert writes == [b"Hello, 16550!\n"]
    uart.unrealize()
    assert uart.out_path.read_bytes() == b"Hello, 16550!\n"


def test_divisor_latch_and_scratch(machine, uart):
    outb(machine, LCR, 0x83)
    outb(machine, DLL, 0x01)
    outb(machine, DLM, 0x00)
    outb(machine, LCR, 0x03)
    assert uart.char_transmit_time == 1_000_000_000 // 115200 * 10
    outb(machine, SCR, 0x5A)
    assert inb(machine, SCR) == 0x5A
    assert inb(machine, LCR) == 0x03


def test_thre_interrupt_and_iir_read_clears_it(machine, uart):
    line = machine.gsi(4)
    outb(machine, IER, 0x02)
    assert line.level
    assert inb(machine, IIR) == 0x02
    assert inb(machine, IIR) == 0x01 and not line.level  # reading IIR acknowledged THRE
    outb(machine, THR, ord("x"))  # transmitting makes THR empty again
    assert line.level and inb(machine, IIR) == 0x02


def test_loopback_receives_own_output_and_overruns(machine, uart):
    line = machine.gsi(4)
    outb(machine, MCR, 0x10 | 0x0B)
    assert inb(machine, MSR) & 0xF0 == 0xB0  # OUT2->DCD, RTS->CTS, DTR->DSR
    outb(machine, IER, 0x05)  # RDI + line status
    outb(machine, THR, 0x41)
    assert inb(machine, LSR) & 0x01 and line.level and inb(machine, IIR) == 0x04
    outb(machine, THR, 0x42)  # no FIFO: second byte overruns the first
    assert inb(machine, IIR) == 0x06  # line status interrupt has priority
    assert inb(machine, LSR) & 0x03 == 0x03
    assert inb(machine, LSR) & 0x02 == 0  # OE clears when LSR is read
    assert inb(machine, RBR) == 0x42
    assert not line.level
    uart.flush_output()
    assert uart.out_path.read_bytes() == b""  # loopback never reaches the backend


def test_fifo_trigger_level_and_flow_control(machine, uart):
    line = machine.gsi(4)
    outb(machine, FCR, 0x41)  # FIFO on, trigger level 4
    assert inb(machine, IIR) & 0xC0 == 0xC0
    outb(machine, IER, 0x01)
    uart.receive(b"abc")
    assert inb(machine, LSR) & 0x01 and not line.level  # below the trigger level
    uart.receive(b"defghijklmnopqrstuvwxyz")
    assert line.level and inb(machine, IIR) & 0x0F == 0x04
    got = bytearray()
    while inb(machine, LSR) & 0x01:
        got.append(inb(machine, RBR))
    assert bytes(got) == b"abcdefghijklmnopqrstuvwxyz"  # flow control lost nothing
    assert not line.level


def test_character_timeout_interrupt(machine, uart):
    line = machine.gsi(4)
    outb(machine, FCR, 0x81)  # trigger level 8
    outb(machine, IER, 0x01)
    uart.receive(b"hi")
    assert not line.level
    advance(machine, 4 * uart.char_transmit_time + 1)
    assert line.level and inb(machine, IIR) & 0x0F == 0x0C
    assert inb(machine, RBR) == ord("h")
    assert not line.level  # reading restarts the timeout
    advance(machine, 4 * uart.char_transmit_time + 1)
    assert inb(machine, IIR) & 0x0F == 0x0C
    assert inb(machine, RBR) == ord("i") and not line.level


def test_fcr_clears_fifos(machine, uart):
    outb(machine, FCR, 0xC1)  # trigger level 14: all three bytes enter the FIFO
    uart.receive(b"abc")
    outb(machine, FCR, 0xC3)  # reset RX FIFO
    assert not inb(machine, LSR) & 0x01
    uart.receive(b"d")
    assert inb(machine, RBR) == ord("d")


def test_vmstate_round_trip_mid_reception(machine, uart, tmp_path):
    outb(machine, FCR, 0x81)
    outb(machine, IER, 0x03)
    outb(machine, LCR, 0x1B)
    outb(machine, SCR, 0x77)
    uart.receive(b"xyz")
    clone = migrate_state(uart, serial_on_file(destination(machine), tmp_path / "b.out"))
    regs = [LCR, SCR, IER, MCR]
    assert [clone.port_read(r, 1) for r in regs] == [uart.port_read(r, 1) for r in regs]
    assert clone.recv_fifo == bytearray(b"xyz") and clone.timeout_deadline > 0
    assert [clone.port_read(RBR, 1) for _ in range(3)] == [ord(c) for c in "xyz"]


def test_input_for_a_guest_that_never_reads_is_bounded(machine, uart):
    for _ in range(3 * INPUT_QUEUE_LIMIT // 65536):
        uart.receive(bytes(65536))
    assert len(uart._input) <= INPUT_QUEUE_LIMIT
    assert inb(machine, RBR) == 0 and inb(machine, LSR) & 0x01  # what fitted is still there
