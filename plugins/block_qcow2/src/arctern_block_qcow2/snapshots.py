"""The internal snapshot table: parsing, serializing and looking snapshots up as QEMU does.

An entry is a 40-byte header, extra data (QEMU 7.2 writes 24 bytes: the large
VM state size, the disk size and the instruction count; bytes it does not know
are kept and written back), the ID and the name; each entry starts 8-byte aligned.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L

_ENTRY = struct.Struct(">QIHHIIQII")
_EXTRA = struct.Struct(">QQQ")  # vm_state_size_large, disk_size, icount
#: QEMU's QCOW_MAX_SNAPSHOT_EXTRA_DATA.
MAX_EXTRA_DATA = 1024
#: What QEMU 7.2 reads and writes of the extra data (bytes beyond are kept verbatim).
KNOWN_EXTRA = _EXTRA.size
NO_ICOUNT = (1 << 64) - 1


@dataclass
class Snapshot:
    l1_table_offset: int
    l1_size: int
    id: str
    name: str
    date_sec: int
    date_nsec: int
    vm_clock_nsec: int
    vm_state_size: int
    #: Guest instructions executed (record/replay), None when not recorded.
    icount: int | None = None
    #: Virtual disk size when the snapshot was taken (None: the entry does not say).
    disk_size: int | None = None
    #: Extra data beyond the fields we know, written back as found.
    unknown_extra: bytes = b""

    def as_info(self) -> dict:
        """The fields ``qemu-img info --output=json`` lists for a snapshot."""
        info = {} if self.icount is None else {"icount": self.icount}
        return info | {
            "id": _shown(self.id),
            "name": _shown(self.name),
            "date-sec": self.date_sec,
            "date-nsec": self.date_nsec,
            "vm-clock-sec": self.vm_clock_nsec // 1_000_000_000,
            "vm-clock-nsec": self.vm_clock_nsec % 1_000_000_000,
            "vm-state-size": self.vm_state_size,
        }

    def pack(self) -> bytes:
        """The entry as QEMU 7.2 writes it (no alignment padding after it)."""
        ident, name = _raw(self.id), _raw(self.name)
        small_vm_state = self.vm_state_size if self.vm_state_size <= 0xFFFFFFFF else 0
        icount = NO_ICOUNT if self.icount is None else self.icount
        extra = _EXTRA.pack(self.vm_state_size, self.disk_size or 0, icount) + self.unknown_extra
        head = _ENTRY.pack(
            self.l1_table_offset,
            self.l1_size,
            len(ident),
            len(name),
            self.date_sec,
            self.date_nsec,
            self.vm_clock_nsec,
            small_vm_state,
            len(extra),
        )
        return head + extra + ident + name


def _raw(text: str) -> bytes:
    return text.encode(errors="surrogateescape")


def _shown(text: str) -> str:
    """A name as users see it: bytes that are not UTF-8 shown as U+FFFD, as they print."""
    return _raw(text).decode(errors="replace")


def pack_table(snapshots: list[Snapshot]) -> bytes:
    """The whole snapshot table: the entries, each starting 8-byte aligned."""
    out = bytearray()
    for snap in snapshots:
        out += bytes(-len(out) % 8)
        out += snap.pack()
    return bytes(out)


def read_snapshots(
    file, offset: int, count: int, cluster_size: int, filename: str, file_length: int
) -> tuple[list[Snapshot], int]:
    """Parse ``count`` snapshot entries at ``offset``; return them and the table's byte size."""

    def bad(msg: str) -> ImageFormatError:
        return ImageFormatError(f"qcow2 image '{filename}': snapshot table: {msg}")

    if not count:
        return [], 0
    limit = min(L.MAX_SNAPSHOT_TABLE_BYTES, file_length - offset)
    buf = bytearray(max(0, limit))
    file.pread(offset, memoryview(buf))
    snaps: list[Snapshot] = []
    pos = 0
    for i in range(count):
        pos += -pos % 8
        if pos + _ENTRY.size > len(buf):
            raise bad("truncated")
        (l1_off, l1_size, id_len, name_len, dsec, dnsec, vmclock, vmsize, extra) = (
            _ENTRY.unpack_from(buf, pos)
        )
        pos += _ENTRY.size
        if extra > MAX_EXTRA_DATA:
            raise bad(f"too much extra metadata in snapshot table entry {i}")
        if pos + extra + id_len + name_len > len(buf):
            raise bad("truncated")
        known = bytes(buf[pos : pos + min(extra, KNOWN_EXTRA)]).ljust(KNOWN_EXTRA, b"\0")
        large_vmsize, disk_size, icount = _EXTRA.unpack(known)
        snap = Snapshot(l1_off, l1_size, "", "", dsec, dnsec, vmclock, vmsize)
        if extra >= 8:
            snap.vm_state_size = large_vmsize
        if extra >= 16:
            snap.disk_size = disk_size
        if extra >= 24 and icount != NO_ICOUNT:
            snap.icount = icount
        snap.unknown_extra = bytes(buf[pos + KNOWN_EXTRA : pos + extra])
        pos += extra
        snap.id = bytes(buf[pos : pos + id_len]).decode(errors="surrogateescape")
        pos += id_len
        snap.name = bytes(buf[pos : pos + name_len]).decode(errors="surrogateescape")
        pos += name_len
        shown = _shown(snap.name)
        if l1_off % cluster_size or l1_size * 8 > L.MAX_L1_BYTES:
            raise bad(f"snapshot '{shown}' has an invalid L1 table")
        if l1_off + l1_size * 8 > file_length:
            raise bad(f"L1 table of snapshot '{shown}' lies past the end of the file")
        snaps.append(snap)
    return snaps, pos


# --- looking snapshots up (QEMU's find_snapshot_by_id_and_name and friends) -------------


def find_by_id_and_name(snapshots: list[Snapshot], ident: str | None, name: str | None) -> int:
    """Index of the first snapshot matching the ID and/or the name given; -1 if none."""
    if ident is None and name is None:
        return -1
    for i, snap in enumerate(snapshots):
        if (ident is None or snap.id == ident) and (name is None or snap.name == name):
            return i
    return -1


def find_by_id_or_name(snapshots: list[Snapshot], id_or_name: str) -> int:
    """The snapshot whose ID is ``id_or_name``, else the first one of that name; -1 if none."""
    index = find_by_id_and_name(snapshots, id_or_name, None)
    return index if index >= 0 else find_by_id_and_name(snapshots, None, id_or_name)


def new_snapshot_id(snapshots: list[Snapshot]) -> str:
    """One more than the largest numeric ID (the digits an ID starts with, as strtoul)."""
    highest = 0
    for snap in snapshots:
        digits = snap.id.lstrip()
        digits = digits[1:] if digits[:1] == "+" else digits
        end = 0
        while end < len(digits) and digits[end].isascii() and digits[end].isdigit():
            end += 1
        highest = max(highest, int(digits[:end]) if end else 0)
    return str(highest + 1)
