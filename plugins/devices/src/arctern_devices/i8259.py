"""The 8259A programmable interrupt controller ("i8259"), following QEMU's hw/intc/i8259.c.

One device is one chip: eight inputs, the INTR output, ICW1-4 initialisation,
OCW1-3 (mask, EOI variants, priority rotation, special mask, poll, register
select), edge or level triggering per input (the ELCR; ICW1's chip-wide LTIM
bit is ignored, as in QEMU 7.2), auto-EOI and special fully nested mode. A
master learns its slave with :meth:`I8259.attach_slave` (the slave's INTR
drives the master's input 2) so that :meth:`I8259.acknowledge` answers the
CPU's interrupt-acknowledge cycle for the pair, including the spurious IRQ 7
and 15 cases. The "pic-pair" device builds the usual PC pair (ports
0x20/0xa0, ELCR 0x4d0/0x4d1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from arctern.errors import StreamError
from arctern.machine.device import Device, prop_bool, prop_int
from arctern.machine.irq import IRQLine
from arctern.machine.vmstate import VMState, boolean, u8

log = logging.getLogger(__name__)

CASCADE_INPUT = 2
SPURIOUS = 7


def _priority(mask: int, priority_add: int) -> int:
    """Priority (0 highest .. 7) of the best bit of ``mask`` under rotation; 8 if none."""
    if not mask:
        return 8
    rotated = ((mask >> priority_add) | (mask << (8 - priority_add))) & 0xFF
    return (rotated & -rotated).bit_length() - 1


class I8259(Device):
    """One 8259A chip on the ISA port space."""

    name: ClassVar[str] = "i8259"
    description: ClassVar[str] = "8259A interrupt controller (one chip)"
    user_creatable: ClassVar[bool] = False
    properties = {
        "iobase": prop_int(0x20),
        "elcr-addr": prop_int(0x4D0, signed=True),
        "elcr-mask": prop_int(0xF8),
        "master": prop_bool(True),
    }
    vmstate = VMState(
        "i8259",
        1,
        [
            u8("last_irr"),
            u8("irr"),
            u8("imr"),
            u8("isr"),
            u8("priority_add"),
            u8("irq_base"),
            boolean("read_reg_select"),
            boolean("poll"),
            boolean("special_mask"),
            u8("init_state"),
            boolean("auto_eoi"),
            boolean("rotate_on_auto_eoi"),
            boolean("special_fully_nested_mode"),
            boolean("init4"),
            boolean("single_mode"),
            u8("elcr"),
        ],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.master: bool = self.props["master"]
        self.elcr_mask: int = self.props["elcr-mask"] & 0xFF
        #: The INTR output (to the CPU, or to the master's input 2 for a slave).
        self.intr = IRQLine(f"{self.name}.intr")
        self.slave: I8259 | None = None
        self.elcr = 0
        self.irr = 0
        self._init_reset()

    def realize(self) -> None:
        io = self.machine.io
        io.add(self.props["iobase"], 2, self, self.name)
        if self.props["elcr-addr"] >= 0:
            io.add(self.props["elcr-addr"], 1, _ELCRPort(self), f"{self.name} elcr")

    def reset(self) -> None:
        self.elcr = 0
        self._init_reset()
        self._update_irq()

    def post_load(self) -> None:
        if self.priority_add > 7 or self.init_state > 3:
            raise StreamError(f"{self.name}: invalid state (priority {self.priority_add})")
        self._update_irq()

    def _init_reset(self) -> None:
        """What ICW1 resets (ELCR excepted; level inputs keep their request)."""
        self.last_irr = 0
        self.irr &= self.elcr
        self.imr = 0
        self.isr = 0
        self.priority_add = 0
        self.irq_base = 0
        self.read_reg_select = False
        self.poll = False
        self.special_mask = False
        self.init_state = 0
        self.auto_eoi = False
        self.rotate_on_auto_eoi = False
        self.special_fully_nested_mode = False
        self.init4 = False
        self.single_mode = False

    # --- wiring --------------------------------------------------------------

    def input(self, n: int) -> Callable[[bool], None]:
        """The handler to connect an IRQ line to input ``n`` (0-7) with."""
        if not 0 <= n < 8:
            raise ValueError(f"8259 input {n} out of range 0-7")
        return lambda level: self.set_irq(n, level)

    def attach_slave(self, slave: I8259) -> None:
        """Cascade ``slave`` on input 2; acknowledge() then reaches it."""
        self.slave = slave
        slave.intr.connect(self.input(CASCADE_INPUT))

    # --- the logic of hw/intc/i8259.c ------------------------------------------

    def set_irq(self, n: int, level: bool) -> None:
        mask = 1 << n
        if self.elcr & mask:
            if level:
                self.irr |= mask
                self.last_irr |= mask
            else:
                self.irr &= ~mask
                self.last_irr &= ~mask
        elif level:
            if not self.last_irr & mask:
                self.irr |= mask  # a rising edge
            self.last_irr |= mask
        else:
            self.last_irr &= ~mask
        self._update_irq()

    def _get_irq(self) -> int:
        """The input to deliver next, or -1."""
        mask = self.irr & ~self.imr
        priority = _priority(mask, self.priority_add)
        if priority == 8:
            return -1
        mask = self.isr
        if self.special_mask:
            mask &= ~self.imr
        if self.special_fully_nested_mode and self.master:
            mask &= ~(1 << CASCADE_INPUT)
        if priority < _priority(mask, self.priority_add):
            return (priority + self.priority_add) & 7
        return -1

    def _update_irq(self) -> None:
        self.intr.set(self._get_irq() >= 0)

    def _intack(self, irq: int) -> None:
        if self.auto_eoi:
            if self.rotate_on_auto_eoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= 1 << irq
        if not self.elcr & (1 << irq):
            self.irr &= ~(1 << irq)  # a level-triggered request stays until the line drops
        self._update_irq()

    def acknowledge(self) -> int:
        """The CPU's INTA cycle: the vector to take (spurious IRQ 7/15 when nothing is left)."""
        irq = self._get_irq()
        if irq < 0:
            return self.irq_base + SPURIOUS
        if irq == CASCADE_INPUT and self.slave is not None:
            slave = self.slave
            irq2 = slave._get_irq()
            if irq2 >= 0:
                slave._intack(irq2)
            else:
                irq2 = SPURIOUS
            vector = slave.irq_base + irq2
        else:
            vector = self.irq_base + irq
        self._intack(irq)
        return vector

    # --- registers ----------------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        if self.poll:
            self.poll = False
            irq = self._get_irq()
            if irq < 0:
                return 0
            self._intack(irq)
            return irq | 0x80
        if (port - self.props["iobase"]) & 1 == 0:
            return self.isr if self.read_reg_select else self.irr
        return self.imr

    def port_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if (port - self.props["iobase"]) & 1:
            self._write_data(value)
        elif value & 0x10:
            self._icw1(value)
        elif value & 0x08:
            self._ocw3(value)
        else:
            self._ocw2(value)

    def _icw1(self, value: int) -> None:
        self._init_reset()
        self._update_irq()
        self.init_state = 1
        self.init4 = bool(value & 1)
        self.single_mode = bool(value & 2)
        if value & 0x08:
            log.debug("%s: level-triggered mode (LTIM) is not supported, as in QEMU 7.2", self.name)

    def _ocw3(self, value: int) -> None:
        if value & 0x04:
            self.poll = True
        if value & 0x02:
            self.read_reg_select = bool(value & 1)
        if value & 0x40:
            self.special_mask = bool(value & 0x20)

    def _ocw2(self, value: int) -> None:
        cmd = value >> 5
        if cmd in (0, 4):  # rotate in auto-EOI mode: clear / set
            self.rotate_on_auto_eoi = cmd == 4
        elif cmd in (1, 5):  # non-specific EOI, optionally rotating
            priority = _priority(self.isr, self.priority_add)
            if priority != 8:
                irq = (priority + self.priority_add) & 7
                self.isr &= ~(1 << irq)
                if cmd == 5:
                    self.priority_add = (irq + 1) & 7
                self._update_irq()
        elif cmd == 3:  # specific EOI
            self.isr &= ~(1 << (value & 7))
            self._update_irq()
        elif cmd == 6:  # set priority
            self.priority_add = (value + 1) & 7
            self._update_irq()
        elif cmd == 7:  # rotate on specific EOI
            irq = value & 7
            self.isr &= ~(1 << irq)
            self.priority_add = (irq + 1) & 7
            self._update_irq()

    def _write_data(self, value: int) -> None:
        state = self.init_state
        if state == 0:  # OCW1
            self.imr = value
            self._update_irq()
        elif state == 1:  # ICW2
            self.irq_base = value & 0xF8
            self.init_state = (3 if self.init4 else 0) if self.single_mode else 2
        elif state == 2:  # ICW3 (cascade wiring is fixed by the board)
            self.init_state = 3 if self.init4 else 0
        else:  # ICW4
            self.special_fully_nested_mode = bool(value >> 4 & 1)
            self.auto_eoi = bool(value >> 1 & 1)
            self.init_state = 0


class _ELCRPort:
    """The edge/level control register of one chip (port 0x4d0 or 0x4d1)."""

    def __init__(self, pic: I8259) -> None:
        self.pic = pic

    def port_read(self, port: int, size: int) -> int:
        return self.pic.elcr

    def port_write(self, port: int, size: int, value: int) -> None:
        pic = self.pic
        pic.elcr = value & pic.elcr_mask
        pic._update_irq()


class PICPair(Device):
    """The PC's cascaded 8259 pair: inputs 0-15, one INTR output, one acknowledge()."""

    name: ClassVar[str] = "pic-pair"
    description: ClassVar[str] = "two cascaded 8259A chips as on the PC (ports 0x20, 0xa0)"
    user_creatable: ClassVar[bool] = False
    properties = {
        "master-iobase": prop_int(0x20),
        "slave-iobase": prop_int(0xA0),
        "master-elcr": prop_int(0x4D0),
        "slave-elcr": prop_int(0x4D1),
    }

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.master: I8259 | None = None
        self.slave: I8259 | None = None

    def realize(self) -> None:
        p, create = self.props, self.machine.create_device
        self.master = create(
            "i8259", iobase=p["master-iobase"], **{"elcr-addr": p["master-elcr"]}, master=True
        )
        self.slave = create(
            "i8259",
            iobase=p["slave-iobase"],
            **{"elcr-addr": p["slave-elcr"], "elcr-mask": 0xDE},
            master=False,
        )
        self.master.attach_slave(self.slave)

    def reset(self) -> None:
        """The two chips are devices of their own and reset themselves."""

    @property
    def intr(self) -> IRQLine:
        return self.master.intr

    def input(self, n: int) -> Callable[[bool], None]:
        """Handler for ISA IRQ ``n`` (0-15; 2 is the cascade)."""
        if not 0 <= n < 16:
            raise ValueError(f"ISA IRQ {n} out of range 0-15")
        return self.master.input(n) if n < 8 else self.slave.input(n - 8)

    def acknowledge(self) -> int:
        return self.master.acknowledge()
