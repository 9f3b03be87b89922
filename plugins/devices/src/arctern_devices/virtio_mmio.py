"""virtio-mmio transport (virtio 1.x section 4.2), legacy and modern, as QEMU 7.2 has it.

It drives any :class:`arctern.virtio.VirtioDevice`, this plugin's or a third party's,
through the device contract of :mod:`arctern.virtio` (see
docs/plugin-authors/virtio-devices.md).

QEMU 7.2 defaults to the legacy register layout (Version 1: GuestPageSize,
QueuePFN, QueueAlign); ``-global virtio-mmio.force-legacy=false`` selects the
modern one (Version 2: 64-bit feature words, separate ring addresses,
QueueReady, ConfigGeneration). A transport with no device plugged still
answers MagicValue, Version and VendorID and reads DeviceID 0, so a driver
probing a row of transports skips the empty ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from arctern.errors import MachineError, StreamError
from arctern.machine.device import Device, prop_bool, prop_int
from arctern.machine.vmstate import VMState, array, boolean, struct_list, u8, u32, u64
from arctern.virtio import VIRTQUEUE_MAX_SIZE, VirtioBus, VirtioDevice
from arctern.virtio.mmio_layout import (
    CONFIG,
    CONFIG_GENERATION,
    DEVICE_FEATURES,
    DEVICE_FEATURES_SEL,
    DEVICE_ID,
    DRIVER_FEATURES,
    DRIVER_FEATURES_SEL,
    GUEST_PAGE_SIZE,
    INTERRUPT_ACK,
    INTERRUPT_STATUS,
    MAGIC,
    MAGIC_VALUE,
    QUEUE_ALIGN,
    QUEUE_AVAIL_HIGH,
    QUEUE_AVAIL_LOW,
    QUEUE_DESC_HIGH,
    QUEUE_DESC_LOW,
    QUEUE_NOTIFY,
    QUEUE_NUM,
    QUEUE_NUM_MAX,
    QUEUE_PFN,
    QUEUE_READY,
    QUEUE_SEL,
    QUEUE_USED_HIGH,
    QUEUE_USED_LOW,
    STATUS,
    VENDOR_ID,
    VERSION,
)
from arctern.virtio.spec import LEGACY_ONLY_FEATURES, STATUS_FEATURES_OK

log = logging.getLogger(__name__)

VENDOR = 0x554D4551  # "QEMU"
REGION_SIZE = 0x200
#: How many queues a transport addresses (QEMU's VIRTIO_QUEUE_MAX).
QUEUE_MAX = 1024

_LEGACY_ONLY = {GUEST_PAGE_SIZE, QUEUE_ALIGN, QUEUE_PFN}
_MODERN_ONLY = {
    QUEUE_READY,
    QUEUE_DESC_LOW,
    QUEUE_DESC_HIGH,
    QUEUE_AVAIL_LOW,
    QUEUE_AVAIL_HIGH,
    QUEUE_USED_LOW,
    QUEUE_USED_HIGH,
    CONFIG_GENERATION,
}
#: Modern ring address registers: offset -> (attribute, high half?).
_RING_REGS = {
    QUEUE_DESC_LOW: ("desc", False),
    QUEUE_DESC_HIGH: ("desc", True),
    QUEUE_AVAIL_LOW: ("avail", False),
    QUEUE_AVAIL_HIGH: ("avail", True),
    QUEUE_USED_LOW: ("used", False),
    QUEUE_USED_HIGH: ("used", True),
}


@dataclass
class ModernQueueRegs:
    """The modern transport's shadow of one queue until the driver sets QueueReady."""

    num: int = 0
    ready: bool = False
    desc: int = 0
    avail: int = 0
    used: int = 0


MODERN_QUEUE_VMSTATE = VMState(
    "virtio-mmio-queue",
    1,
    [u32("num"), boolean("ready"), u64("desc"), u64("avail"), u64("used")],
)


class VirtioMMIO(Device):
    """One virtio-mmio transport: a 0x200-byte register window and an IRQ line."""

    name: ClassVar[str] = "virtio-mmio"
    description: ClassVar[str] = "virtio-mmio transport (legacy by default, as QEMU 7.2)"
    user_creatable: ClassVar[bool] = False
    properties = {
        "addr": prop_int(0),
        "irq": prop_int(-1, signed=True),
        "force-legacy": prop_bool(True),
    }
    vmstate = VMState(
        "virtio-mmio",
        1,
        [
            u8("host_features_sel"),
            u8("guest_features_sel"),
            u32("guest_page_shift"),
            array("guest_features", "u32", 2),
            struct_list("vqs", MODERN_QUEUE_VMSTATE, ModernQueueRegs),
        ],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.legacy: bool = self.props["force-legacy"]
        self.irq = None
        self.vdev: VirtioDevice | None = None
        self.vqs: list[ModernQueueRegs] = []
        self.bus = VirtioBus(self, f"virtio-mmio-bus.{self.props['addr']:#x}")
        self._reset_registers()

    def realize(self) -> None:
        base = self.props["addr"]
        self.machine.address_space.add_mmio(base, REGION_SIZE, self, f"virtio-mmio@{base:#x}")
        if self.props["irq"] >= 0:
            self.irq = self.machine.gsi(self.props["irq"])
        self.machine.add_bus(self.bus)

    def reset(self) -> None:
        if self.vdev is not None:
            self.vdev.reset()
        self._reset_registers()
        self.update_irq()

    def _reset_registers(self) -> None:
        self.host_features_sel = 0
        self.guest_features_sel = 0
        self.guest_page_shift = 0
        self.guest_features = [0, 0]
        nqueues = len(self.vdev.queues) if self.vdev is not None else 0
        self.vqs = [ModernQueueRegs() for _ in range(nqueues)]

    def post_load(self) -> None:
        queues = len(self.vdev.queues) if self.vdev is not None else 0
        if len(self.vqs) != queues:
            raise StreamError(f"{self.name}: state has {len(self.vqs)} queues, device {queues}")
        self.update_irq()

    # --- the bus -------------------------------------------------------------

    def device_plugged(self, device: Device) -> None:
        if not isinstance(device, VirtioDevice):
            raise MachineError(f"device '{device.name}' cannot plug into a virtio-mmio transport")
        self.vdev = device
        device.plugged(self)
        self.vqs = [ModernQueueRegs() for _ in device.queues]

    def device_unplugged(self) -> None:
        if self.vdev is not None:
            self.vdev.unplugged()
        self.vdev = None
        self.vqs = []
        self.update_irq()

    def update_irq(self) -> None:
        if self.irq is not None:
            self.irq.set(self.vdev is not None and self.vdev.isr != 0)

    # --- registers --------------------------------------------------------------

    def _identity(self, offset: int) -> int | None:
        """MagicValue, Version or VendorID: what a transport reads with or without a device."""
        if offset == MAGIC_VALUE:
            return MAGIC
        if offset == VERSION:
            return 1 if self.legacy else 2
        if offset == VENDOR_ID:
            return VENDOR
        return None

    def mmio_read(self, offset: int, size: int) -> int:
        vdev = self.vdev
        if vdev is None:  # any access size, as QEMU: the rest reads as zero
            return self._identity(offset) or 0
        if offset >= CONFIG:
            return vdev.config_read(offset - CONFIG, size)
        if size != 4 or not self._valid_for_version(offset, "read"):
            return 0
        identity = self._identity(offset)
        if identity is not None:
            return identity
        if offset == DEVICE_ID:
            return vdev.device_id
        if offset == DEVICE_FEATURES:
            if self.legacy:
                return 0 if self.host_features_sel else vdev.host_features & 0xFFFFFFFF
            features = vdev.host_features & ~LEGACY_ONLY_FEATURES
            return features >> (32 * self.host_features_sel) & 0xFFFFFFFF
        if offset == QUEUE_NUM_MAX:
            return VIRTQUEUE_MAX_SIZE if vdev.selected_queue() is not None else 0
        if offset == QUEUE_PFN:
            vq = vdev.selected_queue()
            return vq.desc >> self.guest_page_shift if vq is not None else 0
        if offset == QUEUE_READY:
            regs = self._modern_regs()
            return int(regs.ready) if regs is not None else 0
        if offset == INTERRUPT_STATUS:
            return vdev.isr
        if offset == STATUS:
            return vdev.status
        if offset == CONFIG_GENERATION:
            return vdev.config_generation
        log.debug("virtio-mmio: read of write-only or unknown register %#x", offset)
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        vdev = self.vdev
        if vdev is None:
            return
        if offset >= CONFIG:
            vdev.config_write(offset - CONFIG, size, value)
            return
        if size != 4 or not self._valid_for_version(offset, "write"):
            return
        if offset == DEVICE_FEATURES_SEL:
            self.host_features_sel = 1 if value else 0
        elif offset == DRIVER_FEATURES:
            if not self.legacy:
                self.guest_features[self.guest_features_sel] = value
            elif self.guest_features_sel:
                log.debug("virtio-mmio: legacy driver wrote features with sel > 0")
            else:
                vdev.set_features(value)
        elif offset == DRIVER_FEATURES_SEL:
            self.guest_features_sel = 1 if value else 0
        elif offset == GUEST_PAGE_SIZE:
            shift = (value & -value).bit_length() - 1 if value else 32
            self.guest_page_shift = shift if shift <= 31 else 0
        elif offset == QUEUE_SEL:
            if value < QUEUE_MAX:
                vdev.queue_sel = value
        elif offset == QUEUE_NUM:
            self._write_queue_num(value)
        elif offset == QUEUE_ALIGN:
            vq = vdev.selected_queue()
            if vq is not None:
                vq.set_align(value)
        elif offset == QUEUE_PFN:
            self._write_queue_pfn(value)
        elif offset == QUEUE_READY:
            self._write_queue_ready(value)
        elif offset == QUEUE_NOTIFY:
            if value < QUEUE_MAX:
                vdev.notify_queue(value)
        elif offset == INTERRUPT_ACK:
            vdev.ack_interrupt(value)
        elif offset == STATUS:
            self._write_status(value)
        elif offset in _RING_REGS:
            regs = self._modern_regs()
            if regs is not None:
                attr, high = _RING_REGS[offset]
                old = getattr(regs, attr)
                new = (old & 0xFFFFFFFF) | value << 32 if high else (old & ~0xFFFFFFFF) | value
                setattr(regs, attr, new)
        else:
            log.debug("virtio-mmio: write to read-only or unknown register %#x", offset)

    def _valid_for_version(self, offset: int, what: str) -> bool:
        if offset in (_LEGACY_ONLY if not self.legacy else _MODERN_ONLY):
            version = "legacy" if self.legacy else "modern"
            log.debug("virtio-mmio: %s of register %#x not in %s mode", what, offset, version)
            return False
        return True

    def _modern_regs(self) -> ModernQueueRegs | None:
        sel = self.vdev.queue_sel
        return self.vqs[sel] if sel < len(self.vqs) else None

    def _write_queue_num(self, value: int) -> None:
        vq = self.vdev.selected_queue()
        if vq is None:
            return
        vq.set_num(value)
        if self.legacy:
            vq.update_legacy_rings()
        else:
            self.vqs[vq.index].num = value

    def _write_queue_pfn(self, value: int) -> None:
        vdev = self.vdev
        if value == 0:
            vdev.reset()
            return
        vq = vdev.selected_queue()
        if vq is not None:
            vq.set_legacy_addr(value << self.guest_page_shift)

    def _write_queue_ready(self, value: int) -> None:
        vq = self.vdev.selected_queue()
        if vq is None:
            return
        regs = self.vqs[vq.index]
        if value:
            vq.set_num(regs.num)
            vq.set_rings(regs.desc, regs.avail, regs.used)
            regs.ready = True
        else:
            regs.ready = False

    def _write_status(self, value: int) -> None:
        vdev = self.vdev
        if not self.legacy and value & STATUS_FEATURES_OK:
            vdev.set_features(self.guest_features[1] << 32 | self.guest_features[0])
        vdev.set_status(value)
        if vdev.status == 0:
            vdev.reset()
            for regs in self.vqs:
                regs.ready = False
