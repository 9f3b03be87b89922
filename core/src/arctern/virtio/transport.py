"""The transport side of the virtio contract: what a transport offers its device.

A transport (virtio-mmio, a future virtio-pci or virtio-ccw) is an ordinary
:class:`~arctern.machine.device.Device` that owns the register file the guest
sees, and a one-slot :class:`VirtioBus` that a :class:`~arctern.virtio.device.VirtioDevice`
plugs into. It translates register accesses into the device's driver-side calls
(``set_features``, ``set_status``, ``notify_queue``, ``config_read`` ...) and raises
its interrupt from the device's ISR when the device calls ``update_irq``.
"""

from __future__ import annotations

from typing import Protocol

from arctern.machine.device import Bus, Device


class VirtioTransport(Protocol):
    """What a virtio device and its bus need from the transport it is plugged into."""

    #: True while the transport presents the legacy (virtio 0.9.5) interface.
    legacy: bool

    def update_irq(self) -> None:
        """Re-derive the interrupt line from the device's ISR."""

    def device_plugged(self, device: Device) -> None:
        """A device was plugged into the transport's bus (refuse a non-virtio one)."""

    def device_unplugged(self) -> None:
        """The bus's device is going away."""


class VirtioBus(Bus):
    """The one-slot "virtio-bus" a transport offers; plugging tells the transport."""

    TYPE = "virtio-bus"

    def __init__(self, transport: VirtioTransport, name: str) -> None:
        super().__init__(self.TYPE, name, owner=transport)
        self.transport = transport

    def plug(self, device: Device) -> None:
        super().plug(device)
        self.transport.device_plugged(device)

    def unplug(self) -> None:
        self.transport.device_unplugged()
        super().unplug()
