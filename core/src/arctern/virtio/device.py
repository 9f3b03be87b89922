"""The transport-independent half of a virtio device (QEMU's VirtIODevice).

A :class:`VirtioDevice` plugs onto a bus of type "virtio-bus" offered by a
transport (:mod:`arctern.virtio.transport`). It owns what the virtio spec puts
in the device: status, negotiated features, the interrupt status (ISR), the
config generation and the virtqueues. The transport owns its register file and
calls the driver-side methods below; the device calls ``update_irq()`` (through
:meth:`VirtioDevice.notify` and :meth:`VirtioDevice.notify_config`) when the ISR changes.

What a concrete device implements (docs/plugin-authors/virtio-devices.md):

* class attributes ``name``, ``description``, ``device_id`` (virtio 1.x 5),
  ``properties`` and ``vmstate`` (a VMState whose fields start with
  :data:`VIRTIO_FIELDS`);
* :meth:`~VirtioDevice.queue_config`: the default size of each virtqueue;
* :meth:`~VirtioDevice.device_features`: its own feature bits;
* :meth:`~VirtioDevice.get_config` / :meth:`~VirtioDevice.set_config`: the config space;
* :meth:`~VirtioDevice.handle_queue`: the driver notified a queue;
* ``realize`` (the Device contract), and ``reset`` / ``post_load`` / the hook
  ``status_changed`` when it has state of its own (calling the base class's
  ``reset`` and ``post_load``); like any device it may implement
  ``vm_state_changed``, which the machine calls when it starts or stops running.

A driver that breaks the ring protocol gets the device marked broken (and
DEVICE_NEEDS_RESET once VERSION_1 is negotiated), as QEMU's ``virtio_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

from arctern.errors import StreamError
from arctern.machine.device import Device, Prop, prop_bool
from arctern.machine.vmstate import VMState, boolean, copy_states, struct_list, u8, u16, u32, u64
from arctern.virtio.spec import (
    F_ANY_LAYOUT,
    F_NOTIFY_ON_EMPTY,
    F_RING_EVENT_IDX,
    F_RING_INDIRECT_DESC,
    F_RING_RESET,
    F_VERSION_1,
    ISR_CONFIG,
    ISR_QUEUE,
    STATUS_DRIVER_OK,
    STATUS_FEATURES_OK,
    STATUS_NEEDS_RESET,
    bit,
)
from arctern.virtio.transport import VirtioTransport
from arctern.virtio.virtqueue import VIRTQUEUE_MAX_SIZE, RingError, SplitVirtqueue

log = logging.getLogger(__name__)

#: QEMU's common virtio properties (DEFINE_VIRTIO_COMMON_FEATURES): each offers one
#: transport feature, on by default (the transport hides the legacy-only ones from
#: a modern driver).
FEATURE_PROPERTIES = {
    "indirect_desc": F_RING_INDIRECT_DESC,
    "event_idx": F_RING_EVENT_IDX,
    "notify_on_empty": F_NOTIFY_ON_EMPTY,
    "any_layout": F_ANY_LAYOUT,
    "queue_reset": F_RING_RESET,
}

QUEUE_VMSTATE = VMState(
    "virtqueue",
    1,
    [
        u16("num"),
        u32("align"),
        u64("desc"),
        u64("avail"),
        u64("used"),
        u16("last_avail_idx"),
        u16("used_idx"),
        u16("signalled_used"),
    ],
)

#: Fields every virtio device saves; a device's own VMState starts with these.
VIRTIO_FIELDS = [
    u8("status"),
    u8("isr"),
    u64("guest_features"),
    u16("queue_sel"),
    u8("config_generation"),
    boolean("broken"),
    struct_list("queue_state", QUEUE_VMSTATE, SimpleNamespace),
]


class VirtioDevice(Device):
    """Base class of virtio devices: subclass, set ``device_id``, implement
    :meth:`queue_config`, :meth:`device_features`, :meth:`get_config` and :meth:`handle_queue`.

    Attributes a transport reads: ``status``, ``isr``, ``config_generation``,
    ``queue_sel``, :attr:`host_features` and ``queues``.
    """

    bus_type: ClassVar[str | None] = "virtio-bus"
    #: The virtio device ID (2 = block, 4 = entropy source); 0 reads as "no device".
    device_id: ClassVar[int] = 0
    #: A subclass's own ``properties`` are added to these (see ``__init_subclass__``).
    properties: ClassVar[dict[str, Prop]] = {name: prop_bool(True) for name in FEATURE_PROPERTIES}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every virtio device has the common feature properties, as in QEMU."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("properties")
        if own is not None:
            cls.properties = {**super(cls, cls).properties, **own}

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.check_properties()
        self.transport: VirtioTransport | None = None
        self.queues = [
            SplitVirtqueue(i, size, machine.ram) for i, size in enumerate(self.queue_config())
        ]
        self._reset_virtio_state()

    # --- what a concrete device provides ------------------------------------

    def check_properties(self) -> None:
        """Refuse inconsistent property values (MachineError) before any queue exists."""

    def queue_config(self) -> tuple[int, ...]:
        """Default size of each virtqueue (its QueueNum until the driver sets one)."""
        return ()

    def device_features(self) -> int:
        """Device-specific feature bits (the transport adds the common ones)."""
        return 0

    def get_config(self) -> bytes:
        """The device configuration space as the driver reads it (little-endian)."""
        return b""

    def set_config(self, config: bytes) -> None:
        """The driver wrote the configuration space (``config`` is the whole new image)."""

    def handle_queue(self, vq: SplitVirtqueue) -> None:
        """The driver notified ``vq``: pop and serve requests (raise RingError on abuse)."""

    def status_changed(self, old: int) -> None:
        """The driver wrote the status register."""

    # --- plugging ------------------------------------------------------------

    def plugged(self, transport: VirtioTransport) -> None:
        """Called by the transport when the device is plugged into its bus."""
        self.transport = transport

    @property
    def host_features(self) -> int:
        """The features offered: the device's, the common ones, and the transport's."""
        features = self.device_features()
        for prop, feature in FEATURE_PROPERTIES.items():
            if self.props[prop]:
                features |= bit(feature)
        if self.transport is None or self.transport.legacy:
            return features
        return features | bit(F_VERSION_1)

    def unplugged(self) -> None:
        self.transport = None

    # --- state -----------------------------------------------------------------

    def _reset_virtio_state(self) -> None:
        self.status = 0
        self.isr = 0
        self.guest_features = 0
        self.queue_sel = 0
        self.config_generation = 0
        self.broken = False
        for vq in self.queues:
            vq.reset()
        self._derive_queue_flags()

    def reset(self) -> None:
        self._reset_virtio_state()
        self.update_irq()

    @property
    def queue_state(self) -> list[SplitVirtqueue]:
        """The virtqueues as migration sees them (loading copies into the live queues)."""
        return self.queues

    @queue_state.setter
    def queue_state(self, loaded: Sequence[Any]) -> None:
        for state in loaded:
            if state.num > VIRTQUEUE_MAX_SIZE:
                raise StreamError(f"{self.name}: queue size {state.num} above {VIRTQUEUE_MAX_SIZE}")
        copy_states(self.name, self.queues, loaded, QUEUE_VMSTATE)

    def post_load(self) -> None:
        for vq in self.queues:
            vq.post_load()
        self._derive_queue_flags()
        self.update_irq()

    def has_feature(self, n: int) -> bool:
        return bool(self.guest_features >> n & 1)

    def _derive_queue_flags(self) -> None:
        for vq in self.queues:
            vq.event_idx = self.has_feature(F_RING_EVENT_IDX)
            vq.notify_on_empty = self.has_feature(F_NOTIFY_ON_EMPTY)

    # --- the driver's side (called by the transport) ------------------------

    def set_features(self, value: int) -> None:
        """Accept the driver's features (those offered); ignored once FEATURES_OK is set."""
        if self.status & STATUS_FEATURES_OK:
            return
        bad = value & ~self.host_features
        if bad:
            log.warning("%s: driver acked unoffered features %#x", self.name, bad)
        self.guest_features = value & self.host_features
        self._derive_queue_flags()

    def set_status(self, value: int) -> None:
        old = self.status
        self.status = value & 0xFF
        self.status_changed(old)

    def queue(self, index: int) -> SplitVirtqueue | None:
        if 0 <= index < len(self.queues) and self.queues[index].exists:
            return self.queues[index]
        return None

    def selected_queue(self) -> SplitVirtqueue | None:
        """The queue the driver selected (``queue_sel``) for the queue registers, if it exists."""
        return self.queue(self.queue_sel)

    def notify_queue(self, index: int) -> None:
        """QueueNotify: serve the queue unless the device is broken or the queue not set up."""
        vq = self.queue(index)
        if vq is None or not vq.ready or self.broken:
            return
        try:
            self.handle_queue(vq)
        except RingError as exc:
            self.virtio_error(str(exc))

    def ack_interrupt(self, mask: int) -> None:
        self.isr &= ~mask
        self.update_irq()

    def config_read(self, offset: int, size: int) -> int:
        config = self.get_config()
        if offset < 0 or offset + size > len(config):
            return (1 << (8 * size)) - 1
        return int.from_bytes(config[offset : offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        config = bytearray(self.get_config())
        if offset < 0 or offset + size > len(config):
            return
        config[offset : offset + size] = value.to_bytes(size, "little")
        self.set_config(bytes(config))

    # --- the device's side -------------------------------------------------------

    def update_irq(self) -> None:
        if self.transport is not None:
            self.transport.update_irq()

    def notify(self, vq: SplitVirtqueue) -> None:
        """Interrupt the driver for ``vq`` if it wants one (event-idx / NO_INTERRUPT)."""
        if vq.should_notify():
            self.isr |= ISR_QUEUE
            self.update_irq()

    def notify_config(self) -> None:
        """A configuration change: ISR bits 0 and 1 together (status 3), as QEMU's
        virtio_notify_config raises them, which guests see."""
        if not self.status & STATUS_DRIVER_OK:
            return
        self.isr |= ISR_QUEUE | ISR_CONFIG
        self.config_generation = (self.config_generation + 1) & 0xFF
        self.update_irq()

    def virtio_error(self, message: str) -> None:
        """The driver broke the protocol: stop serving queues until it resets the device."""
        log.warning("%s: %s; device needs reset", self.name, message)
        self.broken = True
        if self.has_feature(F_VERSION_1):
            self.status |= STATUS_NEEDS_RESET
            self.notify_config()
