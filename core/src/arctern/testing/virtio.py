"""A scripted guest-side virtio driver: split rings built in guest RAM, virtio-mmio registers.

It plays the part of a guest kernel's virtio_ring.c and virtio_mmio.c, so a
virtio device (yours, through any transport; or a transport) can be tested
with no guest CPU: :class:`Ring` lays out a split virtqueue at fixed guest
addresses, allocates buffers, publishes chains (direct or indirect) and reads
the used ring; :class:`MMIODriver` runs the initialisation sequence and kicks
through a virtio-mmio register window. The device under test only ever sees
guest memory and register accesses, as with a real guest. See
docs/plugin-authors/virtio-devices.md.
"""

from __future__ import annotations

import struct

from arctern.virtio import mmio_layout as mmio
from arctern.virtio.spec import (
    STATUS_ACKNOWLEDGE,
    STATUS_DRIVER,
    STATUS_DRIVER_OK,
    STATUS_FEATURES_OK,
)
from arctern.virtio.virtqueue import VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE

DESC = struct.Struct("<QIHH")
F_NEXT, F_WRITE, F_INDIRECT = VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT


def align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


class Ring:
    """The driver's half of one split virtqueue at fixed guest addresses."""

    def __init__(self, mem, num: int, desc: int, avail: int, used: int, heap: int):
        self.mem, self.num = mem, num
        self.desc, self.avail, self.used = desc, avail, used
        self.heap = heap  # bump allocator for buffers
        self.free = list(range(num))
        self.avail_idx = 0
        self.last_used = 0
        mem.write_bytes(desc, bytes(16 * num))
        mem.write_bytes(avail, bytes(6 + 2 * num))
        mem.write_bytes(used, bytes(6 + 8 * num))

    @classmethod
    def legacy(cls, mem, num: int, base: int, align: int = 4096) -> Ring:
        avail = base + 16 * num
        used = align_up(avail + 4 + 2 * num, align)
        return cls(mem, num, base, avail, used, align_up(used + 6 + 8 * num, 4096))

    @classmethod
    def modern(cls, mem, num: int, base: int) -> Ring:
        desc = base
        avail = align_up(desc + 16 * num, 2)
        used = align_up(avail + 6 + 2 * num, 4)
        return cls(mem, num, desc, avail, used, align_up(used + 6 + 8 * num, 4096))

    def alloc(self, data: bytes | int) -> tuple[int, int]:
        """Place a buffer (bytes, or a length to reserve) on the heap: (addr, len)."""
        length = data if isinstance(data, int) else len(data)
        addr = self.heap
        self.heap = align_up(self.heap + length, 16)
        if not isinstance(data, int):
            self.mem.write_bytes(addr, data)
        return addr, length

    def write_desc(self, index: int, addr: int, length: int, flags: int, nxt: int) -> None:
        self.mem.write_bytes(self.desc + 16 * index, DESC.pack(addr, length, flags, nxt))

    def add(self, outs: list[bytes], in_lens: list[int], *, indirect: bool = False) -> dict:
        """Publish one chain; return {"head", "in": [(addr, len)...]} for reading results."""
        bufs = [(*self.alloc(data), 0) for data in outs]
        ins = [self.alloc(length) for length in in_lens]
        bufs += [(addr, length, F_WRITE) for addr, length in ins]
        if indirect:
            table = b"".join(
                DESC.pack(addr, length, flags | (F_NEXT if i < len(bufs) - 1 else 0), i + 1)
                for i, (addr, length, flags) in enumerate(bufs)
            )
            table_addr, table_len = self.alloc(table)
            slots = [self.free.pop(0)]
            head = slots[0]
            self.write_desc(head, table_addr, table_len, F_INDIRECT, 0)
        else:
            slots = [self.free.pop(0) for _ in bufs]
            for i, (addr, length, flags) in enumerate(bufs):
                last = i == len(bufs) - 1
                nxt = 0 if last else slots[i + 1]
                self.write_desc(slots[i], addr, length, flags | (0 if last else F_NEXT), nxt)
            head = slots[0]
        self.publish(head)
        return {"head": head, "in": ins, "slots": slots}

    def release(self, sent: dict) -> None:
        """The driver reclaims a chain's descriptors after the device used it."""
        self.free.extend(sent["slots"])

    def publish(self, head: int) -> None:
        slot = self.avail + 4 + 2 * (self.avail_idx % self.num)
        self.mem.write_bytes(slot, struct.pack("<H", head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.set_avail_idx(self.avail_idx)

    def set_avail_idx(self, value: int) -> None:
        self.mem.write_bytes(self.avail + 2, struct.pack("<H", value & 0xFFFF))

    def set_avail_flags(self, flags: int) -> None:
        self.mem.write_bytes(self.avail, struct.pack("<H", flags))

    def set_used_event(self, value: int) -> None:
        self.mem.write_bytes(self.avail + 4 + 2 * self.num, struct.pack("<H", value))

    def used_idx(self) -> int:
        return struct.unpack("<H", self.mem.read_bytes(self.used + 2, 2))[0]

    def used_flags(self) -> int:
        return struct.unpack("<H", self.mem.read_bytes(self.used, 2))[0]

    def avail_event(self) -> int:
        return struct.unpack("<H", self.mem.read_bytes(self.used + 4 + 8 * self.num, 2))[0]

    def collect(self) -> list[tuple[int, int]]:
        """New used entries (id, len) since the last call."""
        out = []
        while self.last_used != self.used_idx():
            slot = self.used + 4 + 8 * (self.last_used % self.num)
            out.append(struct.unpack("<II", self.mem.read_bytes(slot, 8)))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out


class MMIODriver:
    """Register-level driver for one virtio-mmio transport, legacy or modern."""

    def __init__(self, mem, base: int):
        self.mem, self.base = mem, base

    def read(self, reg: int, size: int = 4) -> int:
        return self.mem.read(self.base + reg, size)

    def write(self, reg: int, value: int, size: int = 4) -> None:
        self.mem.write(self.base + reg, size, value)

    def device_features(self) -> int:
        self.write(mmio.DEVICE_FEATURES_SEL, 0)
        low = self.read(mmio.DEVICE_FEATURES)
        self.write(mmio.DEVICE_FEATURES_SEL, 1)
        return self.read(mmio.DEVICE_FEATURES) << 32 | low

    def init(self, features: int, num: int, ring_base: int) -> Ring:
        """The initialisation sequence of virtio 1.x 3.1 (legacy variant for Version 1)."""
        legacy = self.read(mmio.VERSION) == 1
        self.write(mmio.STATUS, 0)
        self.write(mmio.STATUS, STATUS_ACKNOWLEDGE)
        self.write(mmio.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        status = STATUS_ACKNOWLEDGE | STATUS_DRIVER
        if legacy:
            self.write(mmio.DRIVER_FEATURES_SEL, 0)
            self.write(mmio.DRIVER_FEATURES, features & 0xFFFFFFFF)
            self.write(mmio.GUEST_PAGE_SIZE, 4096)
        else:
            for sel in (0, 1):
                self.write(mmio.DRIVER_FEATURES_SEL, sel)
                self.write(mmio.DRIVER_FEATURES, features >> (32 * sel) & 0xFFFFFFFF)
            status |= STATUS_FEATURES_OK
            self.write(mmio.STATUS, status)
            assert self.read(mmio.STATUS) & STATUS_FEATURES_OK
        self.write(mmio.QUEUE_SEL, 0)
        assert num <= self.read(mmio.QUEUE_NUM_MAX)
        self.write(mmio.QUEUE_NUM, num)
        if legacy:
            ring = Ring.legacy(self.mem, num, ring_base)
            self.write(mmio.QUEUE_ALIGN, 4096)
            self.write(mmio.QUEUE_PFN, ring_base >> 12)
        else:
            ring = Ring.modern(self.mem, num, ring_base)
            for offset, addr in (
                (mmio.QUEUE_DESC_LOW, ring.desc),
                (mmio.QUEUE_AVAIL_LOW, ring.avail),
                (mmio.QUEUE_USED_LOW, ring.used),
            ):
                self.write(offset, addr & 0xFFFFFFFF)
                self.write(offset + 4, addr >> 32)
            self.write(mmio.QUEUE_READY, 1)
        self.write(mmio.STATUS, status | STATUS_DRIVER_OK)
        return ring

    def kick(self, queue: int = 0) -> None:
        self.write(mmio.QUEUE_NOTIFY, queue)

    def ack(self) -> int:
        isr = self.read(mmio.INTERRUPT_STATUS)
        self.write(mmio.INTERRUPT_ACK, isr)
        return isr
