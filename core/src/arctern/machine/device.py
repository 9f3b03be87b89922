"""The Device contract and the buses devices plug into.

A device plugin subclasses :class:`Device`, declares its typed
``properties`` and its migratable ``vmstate``, and implements ``realize``
(attach to the machine: ports, MMIO regions, IRQ lines, backends) and
``reset``. The machine creates devices by name through the registry
(:meth:`arctern.machine.machine.Machine.create_device`), applying ``-global``
defaults first, exactly as for ``-device`` given by a user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from arctern.contract import required
from arctern.errors import MachineError
from arctern.machine.props import (
    Prop,
    apply_props,
    prop_bool,
    prop_choice,
    prop_int,
    prop_size,
    prop_str,
)

if TYPE_CHECKING:
    from arctern.machine.machine import Machine
    from arctern.machine.vmstate import VMState

__all__ = [
    "Bus",
    "Device",
    "Prop",
    "prop_bool",
    "prop_choice",
    "prop_int",
    "prop_size",
    "prop_str",
]


class Device:
    """Base class of every device model (``-device NAME``)."""

    #: The registry and ``-device`` name ("isa-serial").
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: A device with a bus type is plugged onto a free bus of that type ("virtio-bus").
    bus_type: ClassVar[str | None] = None
    #: False for board parts a user may not add with ``-device`` (PIC, PIT).
    user_creatable: ClassVar[bool] = True
    properties: ClassVar[dict[str, Prop]] = {}
    #: Declarative, versioned migratable state; None for a stateless device.
    vmstate: ClassVar[VMState | None] = None

    def __init__(self, machine: Machine, *, id: str | None = None, **props: Any) -> None:
        self.machine = machine
        self.id = id
        #: The bus this device is plugged into, if any (set by :meth:`Bus.plug`).
        self.parent_bus: Bus | None = None
        self.props: dict[str, Any] = apply_props(self.name, self.properties, props)

    @required
    def realize(self) -> None:
        """Attach to the machine: I/O ports, MMIO regions, IRQ lines, backends."""

    @required
    def reset(self) -> None:
        """Put the device in its power-on state (also called on system_reset)."""

    def unrealize(self) -> None:
        """Detach and close backends (machine shutdown, hot-unplug)."""

    def post_load(self) -> None:
        """Migration loaded ``vmstate``: re-derive caches, re-assert IRQ levels, re-arm timers."""

    def vm_state_changed(self, running: bool) -> None:
        """The machine started or stopped running (QEMU's VM change state handler).

        Optional. The machine calls it on every device, in creation order when it
        starts running and in reverse order when it stops (pause, I/O error,
        migration, shutdown); e.g. a disk replays the requests an I/O error held back.
        """

    def __repr__(self) -> str:
        ident = f" id={self.id}" if self.id else ""
        return f"<{type(self).__name__} {self.name}{ident}>"


class Bus:
    """A place one device plugs into (a virtio-mmio transport offers a "virtio-bus")."""

    def __init__(self, type: str, name: str, owner: Device | None = None) -> None:
        self.type = type
        self.name = name
        self.owner = owner
        self.device: Device | None = None

    @property
    def free(self) -> bool:
        return self.device is None

    def plug(self, device: Device) -> None:
        if self.device is not None:
            raise MachineError(f"Bus '{self.name}' does not support hotplugging")
        if device.bus_type != self.type:
            raise MachineError(
                f"Bus '{self.name}' is not of type '{device.bus_type}' (it is '{self.type}')"
            )
        self.device = device
        device.parent_bus = self

    def unplug(self) -> None:
        if self.device is not None:
            self.device.parent_bus = None
        self.device = None

    def __repr__(self) -> str:
        return f"<Bus {self.name} ({self.type}) {self.device!r}>"
