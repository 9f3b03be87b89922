"""Creating, applying and deleting internal snapshots (QEMU's block/qcow2-snapshot.c).

A mixin of :class:`arctern_block_qcow2.driver.Qcow2Driver`. Each operation is
planned in memory as changes of references, then made the image at once by a
:class:`MetadataSwitch` (see there why nothing in use is written in place):

* create: the snapshot takes over the active L1 table where it lies; every L2
  table and data cluster it reaches gains a reference; the active image gets a
  new L1 table;
* apply: the active image's references are dropped and the snapshot's gained;
  the active L1 becomes a copy of the snapshot's, the size the snapshot's;
* delete: the snapshot's references are dropped, its L1 table freed.

The active image then owns an L2 table (COPIED flag) exactly when its refcount
is 1, and a data cluster likewise: L2 tables whose flags must change for that
are copied for the active image rather than edited, since snapshots share them.
"""

from __future__ import annotations

import errno
from array import array
from typing import TYPE_CHECKING

from arctern.block.driver import SnapshotError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.mapping import host_clusters
from arctern_block_qcow2.serial import serialized
from arctern_block_qcow2.tables import table_to_bytes

if TYPE_CHECKING:  # imported when a snapshot operation runs: few images have snapshots
    from arctern_block_qcow2.metadata_switch import MetadataSwitch
    from arctern_block_qcow2.snapshots import Snapshot

#: QEMU's snapshot name buffer (QEMUSnapshotInfo.name) holds this many bytes.
MAX_NAME_BYTES = 255
_OFFSET, _COMPRESSED = L.L2E_OFFSET_MASK, L.OFLAG_COMPRESSED


class InternalSnapshots:
    """snapshot_create, snapshot_goto and snapshot_delete of the BlockDriver contract."""

    @serialized
    def snapshot_create(
        self,
        name: str,
        *,
        date_sec: int,
        date_nsec: int,
        vm_clock_nsec: int = 0,
        icount: int | None = None,
    ) -> dict:
        from arctern_block_qcow2.snapshots import Snapshot, new_snapshot_id

        if len(self.snapshots) >= L.MAX_SNAPSHOTS:
            raise SnapshotError(errno.EFBIG, f"'{self._name}' has too many snapshots")
        if len(name.encode(errors="surrogateescape")) > MAX_NAME_BYTES:
            raise SnapshotError(
                errno.EINVAL, f"snapshot names are at most {MAX_NAME_BYTES} bytes long"
            )
        switch = self._start_snapshot_change()
        h = self.h
        self._reference_paths(switch, self.map.l1, 1)
        active_l1 = self._active_view(switch, self.map.l1)
        snap = Snapshot(
            h.l1_table_offset,
            h.l1_size,
            new_snapshot_id(self.snapshots),
            name,
            date_sec,
            date_nsec,
            vm_clock_nsec,
            0,
            icount=icount,
            disk_size=h.size,
        )
        snapshots = [*self.snapshots, snap]
        switch.commit(
            size=h.size,
            l1=active_l1,
            l1_size=h.l1_size,
            snapshots=len(snapshots),
            table=self._new_table(switch, snapshots),
        )
        return snap.as_info()

    @serialized
    def snapshot_goto(self, id_or_name: str) -> None:
        from arctern_block_qcow2.snapshots import find_by_id_or_name

        switch = self._start_snapshot_change()
        h = self.h
        index = find_by_id_or_name(self.snapshots, id_or_name)
        if index < 0:
            raise SnapshotError(errno.ENOENT, f"'{self._name}' has no snapshot '{id_or_name}'")
        snap = self.snapshots[index]
        size = h.size if snap.disk_size is None else snap.disk_size
        if snap.l1_size < -(-size // (h.cluster_size << (h.cluster_bits - 3))) or size % L.SECTOR:
            raise self.corruption(f"snapshot '{snap.name}' has an invalid disk size {size}")
        snapshot_l1 = self.map.read_l1(snap.l1_table_offset, snap.l1_size)
        l1_size = max(h.l1_size, snap.l1_size)  # as QEMU, the active L1 table never shrinks
        snapshot_l1.extend([0] * (l1_size - snap.l1_size))
        self._reference_paths(switch, self.map.l1, -1)
        self._reference_l1_table(switch, h.l1_table_offset, h.l1_size, -1)
        self._reference_paths(switch, snapshot_l1, 1)
        active_l1 = self._active_view(switch, snapshot_l1)
        switch.commit(
            size=size, l1=active_l1, l1_size=l1_size, snapshots=len(self.snapshots), table=None
        )

    @serialized
    def snapshot_delete(self, snapshot_id: str | None, name: str | None) -> None:
        from arctern_block_qcow2.snapshots import find_by_id_and_name

        switch = self._start_snapshot_change()
        h = self.h
        index = find_by_id_and_name(self.snapshots, snapshot_id, name)
        if index < 0:
            raise SnapshotError(errno.ENOENT, f"Can't find the snapshot in '{self._name}'")
        snap = self.snapshots[index]
        self._reference_paths(switch, self.map.read_l1(snap.l1_table_offset, snap.l1_size), -1)
        self._reference_l1_table(switch, snap.l1_table_offset, snap.l1_size, -1)
        snapshots = self.snapshots[:index] + self.snapshots[index + 1 :]
        table = self._new_table(switch, snapshots)
        active_l1 = self._active_view(switch, self.map.l1)
        if active_l1 == self.map.l1:
            active_l1 = None  # the active L1 table stays where it is
        else:
            self._reference_l1_table(switch, h.l1_table_offset, h.l1_size, -1)
        switch.commit(
            size=h.size, l1=active_l1, l1_size=h.l1_size, snapshots=len(snapshots), table=table
        )

    # --- planning ------------------------------------------------------------------

    def _start_snapshot_change(self) -> MetadataSwitch:
        """Refuse unless active and writable; put every cached change on disk; plan a switch."""
        from arctern_block_qcow2.metadata_switch import MetadataSwitch

        self._begin_write()
        self._writeback()
        self.node.file.flush()
        return MetadataSwitch(self)

    def reload_metadata(self) -> None:
        """Read everything again from the file (after a :class:`MetadataSwitch`)."""
        self.map.cache.clear()
        self.refcounts.cache.clear()
        self._load()

    def _reference_l1_table(self, switch: MetadataSwitch, offset: int, size: int, delta: int):
        if size:
            cb = self.h.cluster_bits
            switch.reference(offset >> cb, -(-size * 8 // self.h.cluster_size), delta)

    def _new_table(self, switch: MetadataSwitch, snapshots: list[Snapshot]) -> bytes:
        """The new snapshot table; the old one loses its reference."""
        from arctern_block_qcow2.snapshots import pack_table

        for snap in snapshots:  # an entry without a disk size had the image's (QEMU's reading)
            snap.disk_size = self.h.size if snap.disk_size is None else snap.disk_size
        table = pack_table(snapshots)
        if len(table) > L.MAX_SNAPSHOT_TABLE_BYTES:
            raise SnapshotError(errno.EFBIG, f"'{self._name}': the snapshot table would be too big")
        if self.snapshots:
            cb = self.h.cluster_bits
            clusters = -(-self.snapshot_table_bytes // self.h.cluster_size)
            switch.reference(self.h.snapshots_offset >> cb, clusters, -1)
        return table

    def _l2_offsets(self, l1: array) -> list[int]:
        """The distinct L2 tables an L1 table names (as check counts them), validated."""
        offsets = {entry & L.L1E_OFFSET_MASK for entry in l1}
        offsets.discard(0)
        for offset in offsets:
            if offset % self.h.cluster_size:
                raise self.corruption(f"L2 table offset 0x{offset:x} is not cluster aligned")
        return sorted(offsets)

    def _reference_paths(self, switch: MetadataSwitch, l1: array, delta: int) -> None:
        """Every L2 table of ``l1`` and every cluster they hold gain ``delta`` references."""
        cb = self.h.cluster_bits
        file_clusters = -(-self.node.file.getlength() >> cb)
        for offset in self._l2_offsets(l1):
            switch.reference(offset >> cb, 1, delta)
            table = self.map.cache.get(offset)
            # Data and preallocated zero clusters in bulk; compressed ones are rare.
            compressed = [host_clusters(e, cb) for e in table if e & L.OFLAG_COMPRESSED]
            held = [(e & _OFFSET) >> cb for e in table if e & _OFFSET and not e & _COMPRESSED]
            for first, count in compressed:
                held += range(first, first + count)
            if held and max(held) >= file_clusters:
                raise self.corruption(f"L2 table 0x{offset:x} points past the end of the file")
            switch.deltas.add_each(held, delta)

    def _active_view(self, switch: MetadataSwitch, l1: array) -> array:
        """The active L1 table for L2 tables ``l1`` names, with the COPIED flags of the result.

        A table whose entries' flags are right is kept (shared if its refcount is
        above 1); one whose flags would change is copied for the active image.
        """
        cb = self.h.cluster_bits
        self._l2_offsets(l1)
        view = array("Q", bytes(8 * len(l1)))
        for i, entry in enumerate(l1):
            offset = entry & L.L1E_OFFSET_MASK
            if not offset:
                continue
            table = self.map.cache.get(offset)
            wanted = self._owned_entries(switch, table)
            if wanted == table:
                owned = switch.refcount_after(offset >> cb) == 1
                view[i] = offset | (L.OFLAG_COPIED if owned else 0)
            else:
                switch.reference(offset >> cb, 1, -1)
                view[i] = switch.place(table_to_bytes(wanted)) | L.OFLAG_COPIED
        return view

    def _owned_entries(self, switch: MetadataSwitch, table: array) -> array:
        """``table`` with COPIED set exactly on the entries whose cluster the image owns.

        (Compressed clusters are never owned alone; entries without a cluster never.)
        """
        cb, copied = self.h.cluster_bits, L.OFLAG_COPIED
        wanted = array("Q", [e & ~copied for e in table])
        held = [i for i, e in enumerate(table) if e & _OFFSET and not e & _COMPRESSED]
        counts = switch.refcounts_after([(table[i] & _OFFSET) >> cb for i in held])
        for i, count in zip(held, counts, strict=True):
            if count == 1:
                wanted[i] |= copied
        return wanted
