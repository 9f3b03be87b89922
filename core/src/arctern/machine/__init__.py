"""Machines: memory, devices, IRQ lines, the virtual clock, character backends, the main loop.

The public API, shared by machine types, device plugins, CPUs and migration:

* :mod:`arctern.machine.memory`: RAM (with dirty and code page maps), AddressSpace, IOSpace;
* :mod:`arctern.machine.device`: the Device contract, typed properties, buses;
* :mod:`arctern.machine.vmstate`: declarative, versioned device state;
* :mod:`arctern.machine.irq`, :mod:`arctern.machine.clock`, :mod:`arctern.machine.chardev`;
* :mod:`arctern.machine.machine`: the MachineType contract and the Machine runtime.
"""

from arctern.machine.chardev import Chardev, MemoryChardev, open_chardev
from arctern.machine.clock import Timer, VirtualClock
from arctern.machine.device import Bus, Device
from arctern.machine.irq import IRQLine
from arctern.machine.machine import Machine, MachineType
from arctern.machine.memory import RAM, AddressSpace, IOSpace
from arctern.machine.vmstate import VMState

__all__ = [
    "RAM",
    "AddressSpace",
    "Bus",
    "Chardev",
    "Device",
    "IOSpace",
    "IRQLine",
    "Machine",
    "MachineType",
    "MemoryChardev",
    "Timer",
    "VMState",
    "VirtualClock",
    "open_chardev",
]
