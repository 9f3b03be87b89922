"""isa-debug-exit: a port the guest writes to end the run with a chosen exit status.

As in QEMU, writing ``v`` makes the process exit with status ``(v << 1) | 1``,
so no guest value can produce 0 (which stays QEMU's "shut down normally").
"""

from __future__ import annotations

from typing import ClassVar

from arctern.machine.device import Device, prop_int


class ISADebugExit(Device):
    name: ClassVar[str] = "isa-debug-exit"
    description: ClassVar[str] = "exit the emulator with status (value << 1) | 1 on a port write"
    properties = {
        "iobase": prop_int(0x501),
        "iosize": prop_int(2),
    }

    def realize(self) -> None:
        self.machine.io.add(self.props["iobase"], self.props["iosize"], self, self.name)

    def reset(self) -> None:
        """Stateless."""

    def port_read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def port_write(self, port: int, size: int, value: int) -> None:
        self.machine.request_exit((value << 1) | 1)
