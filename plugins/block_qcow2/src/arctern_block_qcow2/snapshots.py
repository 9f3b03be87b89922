"""The internal snapshot table: read-only parsing (for check, info and COW decisions)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L

_ENTRY = struct.Struct(">QIHHIIQII")


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

    def as_info(self) -> dict:
        """The fields ``qemu-img info --output=json`` lists for a snapshot."""
        info = {} if self.icount is None else {"icount": self.icount}
        return info | {
            "id": self.id,
            "name": self.name,
            "date-sec": self.date_sec,
            "date-nsec": self.date_nsec,
            "vm-clock-sec": self.vm_clock_nsec // 1_000_000_000,
            "vm-clock-nsec": self.vm_clock_nsec % 1_000_000_000,
            "vm-state-size": self.vm_state_size,
        }


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
    for _ in range(count):
        if pos + _ENTRY.size > len(buf):
            raise bad("truncated")
        (l1_off, l1_size, id_len, name_len, dsec, dnsec, vmclock, vmsize, extra) = (
            _ENTRY.unpack_from(buf, pos)
        )
        pos += _ENTRY.size
        if extra >= 8 and pos + 8 <= len(buf):
            vmsize = int.from_bytes(buf[pos : pos + 8], "big")
        icount = None
        if extra >= 24 and pos + 24 <= len(buf):
            icount = int.from_bytes(buf[pos + 16 : pos + 24], "big")
            icount = None if icount == (1 << 64) - 1 else icount
        pos += extra
        if pos + id_len + name_len > len(buf):
            raise bad("truncated")
        ident = buf[pos : pos + id_len].decode(errors="replace")
        pos += id_len
        name = buf[pos : pos + name_len].decode(errors="replace")
        pos += name_len
        pos += -pos % 8
        if l1_off % cluster_size or l1_size * 8 > L.MAX_L1_BYTES:
            raise bad(f"snapshot '{name}' has an invalid L1 table")
        if l1_off + l1_size * 8 > file_length:
            raise bad(f"L1 table of snapshot '{name}' lies past the end of the file")
        snaps.append(Snapshot(l1_off, l1_size, ident, name, dsec, dnsec, vmclock, vmsize, icount))
    return snaps, pos
