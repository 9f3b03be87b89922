"""Registration of the devices of arctern-devices (entry point ``arctern.devices: common``)."""

from __future__ import annotations

from arctern.hookspecs import hookimpl
from arctern_devices.apic import LocalAPIC
from arctern_devices.debug_exit import ISADebugExit
from arctern_devices.i8254 import I8254
from arctern_devices.i8259 import I8259, PICPair
from arctern_devices.ioapic import IOAPIC
from arctern_devices.mc146818 import MC146818
from arctern_devices.serial import Serial16550
from arctern_devices.virtio_blk import VirtioBlk
from arctern_devices.virtio_mmio import VirtioMMIO
from arctern_devices.virtio_rng import VirtioRNG


@hookimpl
def arctern_devices() -> list[type]:
    return [
        Serial16550,
        I8259,
        PICPair,
        I8254,
        IOAPIC,
        LocalAPIC,
        MC146818,
        ISADebugExit,
        VirtioMMIO,
        VirtioBlk,
        VirtioRNG,
    ]
