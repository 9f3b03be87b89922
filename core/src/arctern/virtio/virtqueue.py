"""Split virtqueues (virtio 1.x section 2.7, and the legacy layout of section 4.2.4).

A :class:`SplitVirtqueue` reads the driver's rings straight from guest RAM
(``struct.unpack_from`` on ``ram.data``, no copies) and writes through
``RAM.write``, which keeps the dirty and code-page maps right. Everything the
driver wrote is treated as hostile: ring indexes, descriptor chains, indirect tables and buffer
addresses are validated, and a violation raises :class:`RingError`, which the
owning device turns into "broken, needs reset" as QEMU's ``virtio_error`` does.
The ring layout follows QEMU's ``hw/virtio/virtio.c`` so that guests written
against QEMU see the same notification behaviour.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from arctern.virtio.scatter import Segment

if TYPE_CHECKING:
    from arctern.machine.memory import RAM

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1

#: The largest queue any transport offers (QEMU's VIRTQUEUE_MAX_SIZE); also
#: the most buffers one element may have.
VIRTQUEUE_MAX_SIZE = 1024
#: Legacy (virtio 0.9) ring alignment until the driver sets QueueAlign.
LEGACY_VRING_ALIGN = 4096

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")


class RingError(Exception):
    """The driver broke the virtqueue protocol; the device must stop using the queue."""


@dataclass
class VirtqElement:
    """One request: the head descriptor and its device-readable/-writable buffers."""

    head: int
    out_sg: list[Segment] = field(default_factory=list)  # driver -> device
    in_sg: list[Segment] = field(default_factory=list)  # device -> driver

    @property
    def out_len(self) -> int:
        return sum(length for _addr, length in self.out_sg)

    @property
    def in_len(self) -> int:
        return sum(length for _addr, length in self.in_sg)


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


def _need_event(event: int, new: int, old: int) -> bool:
    """vring_need_event of the virtio spec: did ``new`` pass ``event`` since ``old``?"""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


class SplitVirtqueue:
    """One split virtqueue: ring addresses, indexes and the device's view of them.

    The attributes below are the queue's migratable state (see
    :data:`arctern.virtio.device.QUEUE_VMSTATE`); ``event_idx`` and
    ``notify_on_empty`` are derived from the negotiated features by the device.
    """

    def __init__(self, index: int, size: int, ram: RAM):
        self.index = index
        self.num_default = size
        self.ram = ram
        self.event_idx = False
        self.notify_on_empty = False
        self.reset()

    def reset(self) -> None:
        self.num = self.num_default
        self.align = LEGACY_VRING_ALIGN
        self.desc = 0
        self.avail = 0
        self.used = 0
        self.last_avail_idx = 0
        self.used_idx = 0
        self.signalled_used = 0
        self.signalled_used_valid = False
        self.inuse = 0

    # --- configuration (the transport calls these) ---------------------------

    @property
    def exists(self) -> bool:
        return self.num_default != 0

    @property
    def ready(self) -> bool:
        return self.desc != 0 and self.num != 0

    def set_num(self, num: int) -> None:
        """Set the ring size; like QEMU, ignore sizes above the maximum or a zero size."""
        if bool(num) != bool(self.num) or not 0 <= num <= VIRTQUEUE_MAX_SIZE:
            return
        self.num = num

    def set_legacy_addr(self, desc: int) -> None:
        """Legacy QueuePFN: the three rings are contiguous, the used ring aligned."""
        self.desc = desc
        self.update_legacy_rings()

    def set_align(self, align: int) -> None:
        if align:
            self.align = align
            self.update_legacy_rings()

    def update_legacy_rings(self) -> None:
        if not self.num or not self.desc or not self.align:
            return
        self.avail = self.desc + 16 * self.num
        self.used = _align_up(self.avail + 4 + 2 * self.num, self.align)

    def set_rings(self, desc: int, avail: int, used: int) -> None:
        """Modern transports give the three ring addresses separately."""
        self.desc, self.avail, self.used = desc, avail, used

    # --- guest memory, validated -------------------------------------------

    def _offset(self, addr: int, length: int) -> int:
        """The RAM offset of ``[addr, addr + length)``, which must lie inside guest RAM."""
        ram = self.ram
        if addr < ram.base or length < 0 or addr + length > ram.end:
            raise RingError(
                f"queue {self.index}: buffer {addr:#x}+{length:#x} is outside guest RAM"
            )
        return addr - ram.base

    def _check(self, addr: int, length: int) -> None:
        self._offset(addr, length)

    def _unpack(self, layout: struct.Struct, addr: int) -> tuple:
        return layout.unpack_from(self.ram.data, self._offset(addr, layout.size))

    def _read(self, addr: int, length: int) -> bytes:
        offset = self._offset(addr, length)
        return bytes(self.ram.view[offset : offset + length])

    def _write(self, addr: int, data: bytes) -> None:
        self._offset(addr, len(data))
        self.ram.write(addr, data)  # keeps the dirty and code-page maps right

    def _read_u16(self, addr: int) -> int:
        return self._unpack(_U16, addr)[0]

    def _write_u16(self, addr: int, value: int) -> None:
        self._write(addr, _U16.pack(value & 0xFFFF))

    # --- the avail ring -------------------------------------------------------

    def avail_idx(self) -> int:
        return self._read_u16(self.avail + 2)

    def avail_flags(self) -> int:
        return self._read_u16(self.avail)

    def used_event(self) -> int:
        return self._read_u16(self.avail + 4 + 2 * self.num)

    def set_avail_event(self, value: int) -> None:
        self._write_u16(self.used + 4 + 8 * self.num, value)

    def is_empty(self) -> bool:
        if not self.ready:
            return True
        return self.avail_idx() == self.last_avail_idx

    def pending(self) -> int:
        """How many heads the driver made available that the device has not popped."""
        count = (self.avail_idx() - self.last_avail_idx) & 0xFFFF
        if count > self.num:
            raise RingError(
                f"queue {self.index}: guest moved avail index from "
                f"{self.last_avail_idx} by {count} (ring size {self.num})"
            )
        return count

    def pop(self) -> VirtqElement | None:
        """Take the next available request, or None when the ring is empty."""
        if not self.ready or not self.pending():
            return None
        head = self._read_u16(self.avail + 4 + 2 * (self.last_avail_idx % self.num))
        elem = self.read_chain(head)
        self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
        self.inuse += 1
        if self.event_idx:
            self.set_avail_event(self.last_avail_idx)
        return elem

    def read_chain(self, head: int) -> VirtqElement:
        """Walk the descriptor chain starting at ``head`` (also used to replay requests)."""
        if head >= self.num:
            raise RingError(f"queue {self.index}: guest says index {head} is available")
        elem = VirtqElement(head)
        addr, length, flags, nxt = self._unpack(_DESC, self.desc + 16 * head)
        if flags & VRING_DESC_F_INDIRECT:
            if flags & VRING_DESC_F_NEXT:
                raise RingError(f"queue {self.index}: indirect descriptor with NEXT set")
            if not length or length % 16 or length // 16 > VIRTQUEUE_MAX_SIZE:
                raise RingError(f"queue {self.index}: invalid indirect table size {length}")
            table = self._read(addr, length)
            self._walk(elem, lambda i: _DESC.unpack_from(table, 16 * i), length // 16, 0, True)
        else:
            first = (addr, length, flags, nxt)
            self._walk(
                elem,
                lambda i: first if i == head else self._unpack(_DESC, self.desc + 16 * i),
                self.num,
                head,
                False,
            )
        return elem

    def _walk(self, elem: VirtqElement, fetch, size: int, start: int, indirect: bool) -> None:
        i = start
        for _ in range(size):
            addr, length, flags, nxt = fetch(i)
            if indirect and flags & VRING_DESC_F_INDIRECT:
                raise RingError(f"queue {self.index}: indirect descriptor in indirect table")
            if not length:
                raise RingError(f"queue {self.index}: zero sized buffers are not allowed")
            self._check(addr, length)
            if flags & VRING_DESC_F_WRITE:
                elem.in_sg.append((addr, length))
            elif elem.in_sg:
                raise RingError(f"queue {self.index}: incorrect order for descriptors")
            else:
                elem.out_sg.append((addr, length))
            if not flags & VRING_DESC_F_NEXT:
                return
            if nxt >= size:
                raise RingError(f"queue {self.index}: descriptor next is {nxt} of {size}")
            i = nxt
        raise RingError(f"queue {self.index}: looped descriptor chain")

    # --- the used ring ---------------------------------------------------------

    def push(self, elem: VirtqElement, written: int) -> None:
        """Return ``elem`` to the driver, ``written`` bytes stored in its in-buffers."""
        slot = self.used + 4 + 8 * (self.used_idx % self.num)
        self._write(slot, _USED_ELEM.pack(elem.head, written))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self._write_u16(self.used + 2, self.used_idx)
        self.inuse -= 1

    def set_notification(self, enable: bool) -> None:
        """Ask the driver to kick (or not) when it adds buffers (notification suppression)."""
        if not self.ready:
            return
        if self.event_idx:
            self.set_avail_event(self.avail_idx())
            return
        flags = self._read_u16(self.used)
        if enable:
            flags &= ~VRING_USED_F_NO_NOTIFY
        else:
            flags |= VRING_USED_F_NO_NOTIFY
        self._write_u16(self.used, flags)

    def should_notify(self) -> bool:
        """Whether the driver wants an interrupt for what was just pushed (QEMU's rules)."""
        if self.notify_on_empty and not self.inuse and self.is_empty():
            return True
        if not self.event_idx:
            return not self.avail_flags() & VRING_AVAIL_F_NO_INTERRUPT
        valid = self.signalled_used_valid
        self.signalled_used_valid = True
        old, new = self.signalled_used, self.used_idx
        self.signalled_used = new
        return not valid or _need_event(self.used_event(), new, old)

    def post_load(self) -> None:
        """After migration: elements popped but not pushed are still in use."""
        self.inuse = (self.last_avail_idx - self.used_idx) & 0xFFFF
        self.signalled_used_valid = False
