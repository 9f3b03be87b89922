"""The ns16550A UART ("isa-serial"), register-compatible with QEMU's hw/char/serial.c.

Transmission is instantaneous (as in QEMU with a backend that never blocks):
a THR write moves the byte, or the whole TX FIFO, to the output buffer at
once. The output buffer reaches the character backend in bulk: between CPU
slices (a machine poll hook), when it grows large, and when the device is
reset or unrealized. Received bytes wait in the backend-side queue until the
RX FIFO (16 bytes, trigger levels 1/4/8/14) or the RBR has room, as QEMU's
``can_receive`` flow control does; a character-timeout interrupt fires four
character times after the last received byte when the FIFO is not drained.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from arctern.errors import MachineError
from arctern.machine.device import Device, prop_int, prop_str
from arctern.machine.vmstate import VMState, boolean, buffer, i64, u8, u16

log = logging.getLogger(__name__)

FIFO_LENGTH = 16
BAUD_BASE = 115200
NS_PER_SEC = 1_000_000_000
#: Output accumulated past this size is sent without waiting for the end of the CPU slice.
OUTPUT_FLUSH_SIZE = 4096
#: Input waiting for a guest that does not read is bounded (QEMU applies backpressure instead).
INPUT_QUEUE_LIMIT = 1 << 20

LCR_DLAB = 0x80
IER_MSI, IER_RLSI, IER_THRI, IER_RDI = 0x08, 0x04, 0x02, 0x01
IIR_NO_INT, IIR_ID = 0x01, 0x06
IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_FE = 0xC0
MCR_LOOP, MCR_OUT2 = 0x10, 0x08
MSR_DCD, MSR_DSR, MSR_CTS, MSR_ANY_DELTA = 0x80, 0x20, 0x10, 0x0F
LSR_TEMT, LSR_THRE, LSR_BI, LSR_OE, LSR_DR, LSR_INT_ANY = 0x40, 0x20, 0x10, 0x02, 0x01, 0x1E
FCR_ITL_MASK, FCR_XFR, FCR_RFR, FCR_FE = 0xC0, 0x04, 0x02, 0x01
_TRIGGER_LEVELS = {0x00: 1, 0x40: 4, 0x80: 8, 0xC0: 14}


class Serial16550(Device):
    """ns16550A UART on the ISA port space, attached to a character backend."""

    name: ClassVar[str] = "isa-serial"
    description: ClassVar[str] = "16550A UART"
    properties = {
        "iobase": prop_int(0x3F8),
        "irq": prop_int(4),
        "chardev": prop_str(None),
    }
    vmstate = VMState(
        "serial",
        1,
        [
            u16("divider"),
            u8("rbr"),
            u8("thr"),
            u8("tsr"),
            u8("ier"),
            u8("iir"),
            u8("lcr"),
            u8("mcr"),
            u8("lsr"),
            u8("msr"),
            u8("scr"),
            u8("fcr"),
            u8("recv_fifo_itl"),
            boolean("thr_ipending"),
            boolean("timeout_ipending"),
            buffer("recv_fifo"),
            buffer("xmit_fifo"),
            i64("timeout_deadline"),
        ],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.chardev = None
        self.irq = None
        self._timer = None
        self._output = bytearray()
        self._input = bytearray()  # received from the backend, not yet in the UART
        self._input_dropped = False
        self.char_transmit_time = NS_PER_SEC // 9600 * 10
        self._reset_registers()

    # --- life cycle ------------------------------------------------------------

    def realize(self) -> None:
        machine = self.machine
        machine.io.add(self.props["iobase"], 8, self, self.name)
        self.irq = machine.gsi(self.props["irq"])
        self._timer = machine.new_timer(self._fifo_timeout)
        chardev_id = self.props["chardev"]
        if chardev_id:
            self.chardev = machine.chardevs.get(chardev_id)
            if self.chardev is None:
                raise MachineError(
                    f"Property '{self.name}.chardev' can't find value '{chardev_id}'"
                )
            self.chardev.set_receiver(self.receive)
            self.chardev.set_break_handler(self.receive_break)
        self._flush_hook = self.flush_output  # one bound method, so that it can be removed
        machine.add_poll_hook(self._flush_hook)

    def unrealize(self) -> None:
        """Hand the last output over; the machine owns (and closes) the backend."""
        self.flush_output()
        if self.chardev is not None:
            self.chardev.set_receiver(None)
            self.chardev.set_break_handler(None)
        self.machine.remove_poll_hook(self._flush_hook)

    def _reset_registers(self) -> None:
        self.divider = 0x0C  # 9600 baud
        self.rbr = self.thr = self.tsr = 0
        self.ier = 0
        self.iir = IIR_NO_INT
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.lsr = LSR_TEMT | LSR_THRE
        self.msr = MSR_DCD | MSR_DSR | MSR_CTS
        self.scr = 0
        self.fcr = 0
        self.recv_fifo_itl = 1
        self.thr_ipending = False
        self.timeout_ipending = False
        self.recv_fifo = bytearray()
        self.xmit_fifo = bytearray()
        self.timeout_deadline = -1
        self._update_parameters()

    def reset(self) -> None:
        self.flush_output()
        self._reset_registers()
        if self._timer is not None:
            self._timer.cancel()
        self._update_irq()

    def post_load(self) -> None:
        self.recv_fifo = bytearray(self.recv_fifo[:FIFO_LENGTH])
        self.xmit_fifo = bytearray(self.xmit_fifo[:FIFO_LENGTH])
        self._update_parameters()
        if self._timer is not None:
            if self.timeout_deadline >= 0:
                self._timer.mod(self.timeout_deadline)
            else:
                self._timer.cancel()
        self._update_irq()

    # --- interrupts --------------------------------------------------------------

    def _update_irq(self) -> None:
        iir = IIR_NO_INT
        ier, lsr = self.ier, self.lsr
        if ier & IER_RLSI and lsr & LSR_INT_ANY:
            iir = IIR_RLSI
        elif ier & IER_RDI and self.timeout_ipending:
            iir = IIR_CTI
        elif (
            ier & IER_RDI
            and lsr & LSR_DR
            and (not self.fcr & FCR_FE or len(self.recv_fifo) >= self.recv_fifo_itl)
        ):
            iir = IIR_RDI
        elif ier & IER_THRI and self.thr_ipending:
            iir = IIR_THRI
        elif ier & IER_MSI and self.msr & MSR_ANY_DELTA:
            iir = IIR_MSI
        self.iir = iir | (self.iir & 0xF0)
        if self.irq is not None:
            self.irq.set(iir != IIR_NO_INT)

    def _update_parameters(self) -> None:
        divider = self.divider
        if not divider or divider > BAUD_BASE:
            return
        lcr = self.lcr
        frame = 1 + (1 if lcr & 0x08 else 0) + (lcr & 0x03) + 5 + (2 if lcr & 0x04 else 1)
        self.char_transmit_time = NS_PER_SEC // (BAUD_BASE // divider) * frame

    # --- transmit ----------------------------------------------------------------

    def _transmit(self) -> None:
        if self.fcr & FCR_FE:
            data = bytes(self.xmit_fifo)
            self.xmit_fifo.clear()
        else:
            data = bytes((self.thr,))
        self.tsr = data[-1]
        self.lsr |= LSR_THRE
        if not self.thr_ipending:
            self.thr_ipending = True
            self._update_irq()
        if self.mcr & MCR_LOOP:
            self._receive_now(data)
        else:
            self._output += data
            if len(self._output) >= OUTPUT_FLUSH_SIZE:
                self.flush_output()
        self.lsr |= LSR_TEMT

    def flush_output(self) -> None:
        """Hand what the guest transmitted to the backend in one write."""
        if self._output and self.chardev is not None:
            data = bytes(self._output)
            self._output.clear()
            self.chardev.write(data)

    # --- receive -------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """The backend delivered input; it enters the UART as fast as the guest drains it.

        A guest that never reads cannot make the queue grow without bound: past
        ``INPUT_QUEUE_LIMIT`` bytes further input is dropped (and logged once).
        """
        room = INPUT_QUEUE_LIMIT - len(self._input)
        if len(data) > room:
            if not self._input_dropped:
                log.warning("%s: guest is not reading; dropping serial input", self.name)
            self._input_dropped = True
            data = data[: max(room, 0)]
        else:
            self._input_dropped = False
        self._input += data
        self._accept_input()

    def receive_break(self) -> None:
        """A break on the line (C-a b on mon:stdio): as QEMU, RBR 0 and a NUL in the RX FIFO.

        It overtakes input still queued for the UART, as QEMU's break event does.
        """
        self.rbr = 0
        if len(self.recv_fifo) < FIFO_LENGTH:
            self.recv_fifo.append(0)
        else:
            self.lsr |= LSR_OE
        self.lsr |= LSR_BI | LSR_DR
        self._update_irq()

    def _can_receive(self) -> int:
        if self.fcr & FCR_FE:
            count = len(self.recv_fifo)
            if count >= FIFO_LENGTH:
                return 0
            return self.recv_fifo_itl - count if count <= self.recv_fifo_itl else 1
        return 0 if self.lsr & LSR_DR else 1

    def _accept_input(self) -> None:
        if self.mcr & MCR_LOOP:
            return
        while self._input:
            room = self._can_receive()
            if not room:
                return
            chunk = bytes(self._input[:room])
            del self._input[:room]
            self._receive_now(chunk)

    def _receive_now(self, data: bytes) -> None:
        if self.fcr & FCR_FE:
            room = FIFO_LENGTH - len(self.recv_fifo)
            self.recv_fifo += data[:room]
            if len(data) > room:
                self.lsr |= LSR_OE  # receive overruns do not overwrite the FIFO
            self.lsr |= LSR_DR
            self._arm_timeout()
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE
            self.rbr = data[-1]
            self.lsr |= LSR_DR
        self._update_irq()

    def _arm_timeout(self) -> None:
        if self._timer is None:
            return
        self.timeout_deadline = self.machine.clock.ns() + 4 * self.char_transmit_time
        self._timer.mod(self.timeout_deadline)

    def _fifo_timeout(self) -> None:
        self.timeout_deadline = -1
        if self.recv_fifo:
            self.timeout_ipending = True
            self._update_irq()

    # --- registers --------------------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        reg = (port - self.props["iobase"]) & 7
        if reg == 0:
            if self.lcr & LCR_DLAB:
                return self.divider & 0xFF
            return self._read_rbr()
        if reg == 1:
            return self.divider >> 8 if self.lcr & LCR_DLAB else self.ier
        if reg == 2:
            ret = self.iir
            if ret & IIR_ID == IIR_THRI:
                self.thr_ipending = False
                self._update_irq()
            return ret
        if reg == 3:
            return self.lcr
        if reg == 4:
            return self.mcr
        if reg == 5:
            ret = self.lsr
            if self.lsr & (LSR_BI | LSR_OE):
                self.lsr &= ~(LSR_BI | LSR_OE)
                self._update_irq()
            return ret
        if reg == 6:
            return self._read_msr()
        return self.scr

    def _read_rbr(self) -> int:
        if self.fcr & FCR_FE:
            ret = self.recv_fifo.pop(0) if self.recv_fifo else 0
            if not self.recv_fifo:
                self.lsr &= ~(LSR_DR | LSR_BI)
            else:
                self._arm_timeout()
            self.timeout_ipending = False
        else:
            ret = self.rbr
            self.lsr &= ~(LSR_DR | LSR_BI)
        self._update_irq()
        self._accept_input()
        return ret

    def _read_msr(self) -> int:
        mcr = self.mcr
        if mcr & MCR_LOOP:
            # The modem outputs loop back to the inputs: OUT2->DCD, OUT1->RI, RTS->CTS, DTR->DSR.
            return (mcr & 0x0C) << 4 | (mcr & 0x02) << 3 | (mcr & 0x01) << 5
        ret = self.msr
        if self.msr & MSR_ANY_DELTA:
            self.msr &= 0xF0
            self._update_irq()
        return ret

    def port_write(self, port: int, size: int, value: int) -> None:
        reg = (port - self.props["iobase"]) & 7
        value &= 0xFF
        if reg in (0, 1) and self.lcr & LCR_DLAB:
            shift = 8 * reg
            self.divider = (self.divider & ~(0xFF << shift) | value << shift) & 0xFFFF
            self._update_parameters()
        elif reg == 0:
            self._write_thr(value)
        elif reg == 1:
            self._write_ier(value)
        elif reg == 2:
            self._write_fcr(value)
        elif reg == 3:
            self.lcr = value
            self._update_parameters()
        elif reg == 4:
            was_loop = self.mcr & MCR_LOOP
            self.mcr = value & 0x1F
            if was_loop and not self.mcr & MCR_LOOP:
                self._accept_input()
        elif reg == 7:
            self.scr = value

    def _write_thr(self, value: int) -> None:
        self.thr = value
        if self.fcr & FCR_FE:
            if len(self.xmit_fifo) >= FIFO_LENGTH:
                del self.xmit_fifo[0]  # transmit overruns overwrite the oldest byte
            self.xmit_fifo.append(value)
        self.thr_ipending = False
        self.lsr &= ~(LSR_THRE | LSR_TEMT)
        self._update_irq()
        self._transmit()

    def _write_ier(self, value: int) -> None:
        changed = (self.ier ^ value) & 0x0F
        self.ier = value & 0x0F
        # Enabling THRI with THR empty raises the interrupt again (Windows relies on it).
        if changed & IER_THRI:
            self.thr_ipending = bool(self.ier & IER_THRI and self.lsr & LSR_THRE)
        if changed:
            self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_FE:
            value |= FCR_XFR | FCR_RFR  # enabling or disabling the FIFOs clears them
        if value & FCR_RFR:
            self.lsr &= ~(LSR_DR | LSR_BI)
            if self._timer is not None:
                self._timer.cancel()
            self.timeout_deadline = -1
            self.timeout_ipending = False
            self.recv_fifo.clear()
        if value & FCR_XFR:
            self.lsr |= LSR_THRE
            self.thr_ipending = True
            self.xmit_fifo.clear()
        self.fcr = value & 0xC9
        if self.fcr & FCR_FE:
            self.iir |= IIR_FE
            self.recv_fifo_itl = _TRIGGER_LEVELS[self.fcr & FCR_ITL_MASK]
        else:
            self.iir &= ~IIR_FE
        self._update_irq()
        self._accept_input()
