"""The 82093AA I/O APIC ("ioapic"), following QEMU 7.2's hw/intc/ioapic.c.

24 input pins, each with a 64-bit redirection entry: vector, delivery mode,
destination mode, polarity, trigger mode (edge, or level with the remote IRR
bit cleared by the local APIC's EOI broadcast or the version 0x20 EOI
register), mask and destination. Registers are reached through IOREGSEL
(base + 0x00) and IOWIN (base + 0x10). As in QEMU, input 0 is steered to pin 2
(the ISA timer's IRQ 0 arrives on GSI 2).

The chip delivers through ``deliver(dest, dest_mode, delivery_mode, vector,
level)``, which the board connects to its local APIC(s); the local APIC calls
:meth:`IOAPIC.eoi` for level-triggered vectors (QEMU's ioapic_eoi_broadcast).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from arctern.errors import MachineError, StreamError
from arctern.machine.device import Device, prop_int
from arctern.machine.vmstate import VMState, array, u8, u32

log = logging.getLogger(__name__)

NUM_PINS = 24
REGSEL, IOWIN, EOI = 0x00, 0x10, 0x40
REG_ID, REG_VER, REG_ARB, REG_REDTBL = 0x00, 0x01, 0x02, 0x10
SUPPORTED_VERSIONS = (0x11, 0x20)

VECTOR_MASK = 0xFF
DELIVERY_MODE_SHIFT = 8
DEST_MODE = 1 << 11
DELIVERY_STATUS = 1 << 12
POLARITY = 1 << 13
REMOTE_IRR = 1 << 14
TRIGGER_LEVEL = 1 << 15
MASKED = 1 << 16
DEST_SHIFT = 56
RO_BITS = REMOTE_IRR | DELIVERY_STATUS
RESET_ENTRY = MASKED

#: deliver(dest, dest_mode, delivery_mode, vector, level_triggered)
Deliver = Callable[[int, int, int, int, bool], None]


def _no_apic(dest: int, dest_mode: int, delivery_mode: int, vector: int, level: bool) -> None:
    log.debug("ioapic: vector %#x to no local APIC", vector)


class IOAPIC(Device):
    """One I/O APIC: an MMIO window at ``addr``, inputs 0-23 through :meth:`input`."""

    name: ClassVar[str] = "ioapic"
    description: ClassVar[str] = "82093AA I/O APIC (24 pins)"
    user_creatable: ClassVar[bool] = False
    properties = {
        "addr": prop_int(0xFEC00000),
        "version": prop_int(0x20),
    }
    vmstate = VMState(
        "ioapic",
        1,
        [u8("id"), u8("ioregsel"), u32("irr"), array("ioredtbl", "u64", NUM_PINS)],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        if self.props["version"] not in SUPPORTED_VERSIONS:
            raise MachineError(f"ioapic: version {self.props['version']:#x} is not 0x11 or 0x20")
        self.version: int = self.props["version"]
        #: Where interrupts go: the board connects the local APIC(s) here.
        self.deliver: Deliver = _no_apic
        self.ioredtbl = [RESET_ENTRY] * NUM_PINS
        self.irr = 0
        self.ioregsel = 0
        self.id = 0

    def realize(self) -> None:
        self.machine.address_space.add_mmio(self.props["addr"], 0x1000, self, self.name)

    def reset(self) -> None:
        self.id = 0
        self.ioregsel = 0
        self.irr = 0
        self.ioredtbl = [RESET_ENTRY] * NUM_PINS

    def post_load(self) -> None:
        if len(self.ioredtbl) != NUM_PINS:
            raise StreamError(f"{self.name}: invalid redirection table")
        self.irr &= (1 << NUM_PINS) - 1
        self.id &= 0xF

    # --- inputs ------------------------------------------------------------------

    def input(self, pin: int) -> Callable[[bool], None]:
        """The handler to connect an IRQ line (a GSI) to input ``pin`` with."""
        if not 0 <= pin < NUM_PINS:
            raise ValueError(f"ioapic input {pin} out of range 0-{NUM_PINS - 1}")
        return lambda level: self.set_irq(pin, level)

    def set_irq(self, pin: int, level: bool) -> None:
        if pin == 0:
            pin = 2  # ISA IRQ 0 (the PIT) is wired to pin 2, as in QEMU
        mask = 1 << pin
        entry = self.ioredtbl[pin]
        if entry & TRIGGER_LEVEL:
            if level:
                self.irr |= mask
                if not entry & REMOTE_IRR:
                    self._service()
            else:
                self.irr &= ~mask
        elif level and not entry & MASKED:
            # The 82093AA ignores edges on a masked pin.
            self.irr |= mask
            self._service()

    def _service(self) -> None:
        for pin in range(NUM_PINS):
            mask = 1 << pin
            if not self.irr & mask:
                continue
            entry = self.ioredtbl[pin]
            if entry & MASKED:
                continue
            level = bool(entry & TRIGGER_LEVEL)
            if level:
                if entry & REMOTE_IRR:
                    continue
                self.ioredtbl[pin] = entry | REMOTE_IRR
            else:
                self.irr &= ~mask
            self.deliver(
                entry >> DEST_SHIFT,
                int(bool(entry & DEST_MODE)),
                (entry >> DELIVERY_MODE_SHIFT) & 7,
                entry & VECTOR_MASK,
                level,
            )

    def eoi(self, vector: int) -> None:
        """A local APIC ended a level-triggered ``vector``: clear remote IRR, redeliver."""
        serviced = False
        for pin, entry in enumerate(self.ioredtbl):
            if entry & VECTOR_MASK == vector and entry & TRIGGER_LEVEL and entry & REMOTE_IRR:
                self.ioredtbl[pin] = entry & ~REMOTE_IRR
                serviced = serviced or (not entry & MASKED and bool(self.irr & 1 << pin))
        if serviced:
            self._service()

    # --- registers ----------------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> int:
        if offset == REGSEL:
            return self.ioregsel
        if offset != IOWIN:
            return 0
        sel = self.ioregsel
        if sel == REG_ID:
            return self.id << 24
        if sel == REG_ARB:
            return 0
        if sel == REG_VER:
            return self.version | (NUM_PINS - 1) << 16
        index = (sel - REG_REDTBL) >> 1
        if 0 <= index < NUM_PINS:
            entry = self.ioredtbl[index]
            return (entry >> 32 if sel & 1 else entry) & 0xFFFFFFFF
        return 0  # other registers read 0, as in QEMU

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset == REGSEL:
            self.ioregsel = value & 0xFF
        elif offset == IOWIN:
            self._write_window(value)
        elif offset == EOI and self.version >= 0x20:
            self.eoi(value & VECTOR_MASK)

    def _write_window(self, value: int) -> None:
        sel = self.ioregsel
        if sel == REG_ID:
            self.id = (value >> 24) & 0xF
            return
        index = (sel - REG_REDTBL) >> 1
        if not 0 <= index < NUM_PINS:
            return
        entry = self.ioredtbl[index]
        if sel & 1:
            entry = (entry & 0xFFFFFFFF) | value << 32
        else:
            entry = (entry & ~0xFFFFFFFF) | (value & ~RO_BITS) | (entry & RO_BITS)
            if not entry & TRIGGER_LEVEL:
                entry &= ~REMOTE_IRR  # an edge-triggered pin has no remote IRR
        self.ioredtbl[index] = entry
        self._service()
