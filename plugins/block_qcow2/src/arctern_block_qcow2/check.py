"""Consistency check and repair, computed the way ``qemu-img check`` does.

Every reference the metadata makes (header, L1 tables, L2 tables, data and
compressed clusters, refcount table and blocks, snapshot table) is counted
in memory and compared with the stored refcounts: a stored refcount above
the references is a leak, below is a corruption. The COPIED flags of the
active L1 and its L2 tables are checked against the stored refcounts.
Repair (``fix="leaks"`` or ``"all"``) sets refcounts to the reference counts
and fixes COPIED flags, then checks again, as ``qemu-img check -r`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arctern.block.driver import CheckResult
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.bitmaps import bitmap_references
from arctern_block_qcow2.mapping import Kind, entry_kind, host_clusters
from arctern_block_qcow2.refscan import References, differing, unpack

if TYPE_CHECKING:
    from arctern_block_qcow2.driver import Qcow2Driver


def _count_l1(drv: Qcow2Driver, refs: References, l1, res: CheckResult, active: bool) -> None:
    cb = drv.h.cluster_bits
    seen: set[int] = set()
    for l1_entry in l1:
        l2_offset = l1_entry & L.L1E_OFFSET_MASK
        if l1_entry & L.L1E_RESERVED_MASK:
            res.corruptions += 1
            res.messages.append(f"ERROR found L1 entry with reserved bits set: {l1_entry:x}")
        if not l2_offset:
            continue
        if l2_offset % drv.h.cluster_size:
            res.corruptions += 1
            res.messages.append(
                f"ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; L1 entry corrupted"
            )
            continue
        refs.add(l2_offset >> cb)
        if l2_offset in seen:
            res.corruptions += 1
            res.messages.append(f"ERROR L2 table at 0x{l2_offset:x} is used twice by one L1 table")
            continue
        seen.add(l2_offset)
        if l2_offset + drv.h.cluster_size > drv.node.file.getlength():
            res.corruptions += 1
            res.messages.append(f"ERROR l2_offset={l2_offset:x}: L2 table is outside the image")
            continue
        _count_l2(drv, refs, drv.map.cache.get(l2_offset), res, active)


#: Bits that take an L2 entry off the fast path (anything but a plain data cluster).
_UNUSUAL = L.OFLAG_COMPRESSED | L.OFLAG_ZERO | L.L2E_STD_RESERVED_MASK


def _count_l2(drv: Qcow2Driver, refs: References, table, res: CheckResult, active: bool) -> None:
    """Count one L2 table's references; plain data clusters take a short path."""
    cb, cs = drv.h.cluster_bits, drv.h.cluster_size
    dense, dense_len = refs.dense, len(refs.dense)
    allocated = fragmented = compressed = 0
    highest = -1
    next_contiguous = 0  # fragmentation is counted within one L2 table, as QEMU does
    for entry in table:
        if not entry:
            continue
        host = entry & L.L2E_OFFSET_MASK
        if not entry & _UNUSUAL and host and not host & (cs - 1):
            allocated += 1
            if next_contiguous and host != next_contiguous:
                fragmented += 1
            next_contiguous = host + cs
            cluster = host >> cb
            if cluster < dense_len:
                dense[cluster] += 1
                highest = max(highest, cluster)
            else:
                refs.add(cluster)
            continue
        kind = entry_kind(entry)
        if kind is not Kind.COMPRESSED and entry & L.L2E_STD_RESERVED_MASK:
            res.corruptions += 1
            res.messages.append(f"ERROR found l2 entry with reserved bits set: {entry:x}")
        held = host_clusters(entry, cb)
        if kind is Kind.COMPRESSED:
            if entry & L.OFLAG_COPIED:
                res.corruptions += 1
                res.messages.append(
                    f"ERROR: coffset=0x{host:x}: "
                    "copied flag must never be set for compressed clusters"
                )
            # Compressed clusters count as fragmented, as in qemu-img check.
            allocated += 1
            compressed += 1
            fragmented += 1
        elif held:
            if host % cs:
                res.corruptions += 1
                res.messages.append(
                    f"ERROR offset={host:x}: Cluster is not properly aligned; L2 entry corrupted"
                )
                continue
            allocated += 1
            if next_contiguous and host != next_contiguous:
                fragmented += 1
            next_contiguous = host + cs
        if held:
            refs.add(*held)
    refs.highest = max(refs.highest, highest)
    if active:
        res.allocated_clusters += allocated
        res.fragmented_clusters += fragmented
        res.compressed_clusters += compressed


def _count_references(drv: Qcow2Driver, res: CheckResult, nb_clusters: int) -> References:
    h, cb, cs = drv.h, drv.h.cluster_bits, drv.h.cluster_size
    refs = References(nb_clusters)
    refs.add(0)
    refs.add(h.l1_table_offset >> cb, -(-h.l1_size * 8 // cs))
    _count_l1(drv, refs, drv.map.l1, res, active=True)
    if drv.snapshots:
        refs.add(h.snapshots_offset >> cb, -(-drv.snapshot_table_bytes // cs))
    for snap in drv.snapshots:
        refs.add(snap.l1_table_offset >> cb, -(-snap.l1_size * 8 // cs))
        _count_l1(drv, refs, drv.map.read_l1(snap.l1_table_offset, snap.l1_size), res, active=False)
    refs.add(h.refcount_table_offset >> cb, h.refcount_table_clusters)
    for first, count in bitmap_references(drv.node.file, h, drv._name):
        refs.add(first, count)
    for offset in _Stored(drv, res).block_offsets():
        refs.add(offset >> cb)
    return refs


class _Stored:
    """Stored refcounts through validated refcount blocks; a bad block reads as zeroes."""

    def __init__(self, drv: Qcow2Driver, res: CheckResult | None = None) -> None:
        self.rc = drv.refcounts
        self.cs = drv.h.cluster_size
        self.file_length = drv.node.file.getlength()
        self.res = res
        self._decoded: tuple[int, list[int]] | None = None  # one block, decoded

    def block_offsets(self) -> list[int]:
        """Offsets of the usable refcount blocks, reporting the bad ones (once, to ``res``)."""
        return [off for rt in range(len(self.rc.reftable)) if (off := self._offset(rt, True))]

    def _offset(self, rt_index: int, report: bool = False) -> int:
        if rt_index >= len(self.rc.reftable):
            return 0
        offset = self.rc.reftable[rt_index] & L.REFT_OFFSET_MASK
        problem = None
        if offset % self.cs:
            problem = (
                f"ERROR refcount block {rt_index} is not cluster aligned; "
                "refcount table entry corrupted"
            )
        elif offset and offset + self.cs > self.file_length:
            problem = f"ERROR refcount block {rt_index} is outside image"
        if problem:
            if report and self.res is not None:
                self.res.corruptions += 1
                self.res.messages.append(problem)
            return 0
        return offset

    def block(self, rt_index: int) -> bytes | bytearray:
        offset = self._offset(rt_index)
        return self.rc.cache.get(offset) if offset else bytes(self.cs)

    def get(self, cluster: int) -> int:
        epb = self.rc.fmt.entries
        rt_index = cluster // epb
        if self._decoded is None or self._decoded[0] != rt_index:
            self._decoded = (rt_index, unpack(self.rc.fmt, self.block(rt_index)))
        return self._decoded[1][cluster % epb]


def _mismatches(drv: Qcow2Driver, refs: References, nb_clusters: int):
    """(cluster, stored, referenced) wherever they differ; and the highest cluster in use."""
    fmt, stored = drv.refcounts.fmt, _Stored(drv)
    epb = fmt.entries
    found: list[tuple[int, int, int]] = []
    highest = refs.highest if refs.highest < nb_clusters else -1
    covered = min(nb_clusters, len(drv.refcounts.reftable) * epb)
    for rt_index in range(-(-covered // epb)):
        base = rt_index * epb
        n = min(epb, covered - base)
        block = stored.block(rt_index)
        found += differing(fmt, block, refs.slice(base, base + n), base)
        last = fmt.last_nonzero(block, 0, n)
        if last is not None:
            highest = max(highest, base + last)
    # Beyond the refcount table every stored refcount is zero; past the end of the file
    # only references count (as qemu-img, which grows its table for them).
    found += [(c, 0, refs.get(c)) for c in refs.nonzero(covered, nb_clusters)]
    found += [(c, stored.get(c), n) for c, n in sorted(refs.sparse.items()) if c >= nb_clusters]
    found += [
        (c, stored.get(c), refs.get(c))
        for c in refs.nonzero(max(covered, nb_clusters), len(refs.dense))
    ]
    return found, max([highest] + [c for c, _, _ in found if c >= nb_clusters])


def _scan(drv: Qcow2Driver) -> tuple[CheckResult, list[tuple[int, int, int]], list]:
    """One pass: the result, (cluster, stored, referenced) mismatches, COPIED flag errors."""
    cs = drv.h.cluster_size
    res = CheckResult(
        corruptions=0, leaks=0, allocated_clusters=0, fragmented_clusters=0, compressed_clusters=0
    )
    res.total_clusters = -(-drv.h.size // cs)
    nb_clusters = -(-drv.node.file.getlength() // cs)
    refs = _count_references(drv, res, nb_clusters)
    mismatches, highest = _mismatches(drv, refs, nb_clusters)
    for cluster, have, want in mismatches:
        if have > want:
            res.leaks += 1
            res.messages.append(f"Leaked cluster {cluster} refcount={have} reference={want}")
        else:
            res.corruptions += 1
            res.messages.append(f"ERROR cluster {cluster} refcount={have} reference={want}")
    res.image_end_offset = (highest + 1) * cs
    return res, mismatches, _copied_errors(drv, res)


def _copied_errors(drv: Qcow2Driver, res: CheckResult) -> list:
    """Active L1/L2 entries whose COPIED flag disagrees with refcount == 1."""
    cb = drv.h.cluster_bits
    errors = []
    stored = _Stored(drv)

    cs = drv.h.cluster_size

    def mismatch(entry: int, offset: int, item: tuple, what: str) -> None:
        rc = stored.get(offset >> cb)
        if (rc == 1) != bool(entry & L.OFLAG_COPIED):
            res.corruptions += 1
            res.messages.append(f"ERROR OFLAG_COPIED {what} refcount={rc}")
            errors.append((*item, rc))

    for l1_index, l1_entry in enumerate(drv.map.l1):
        l2_offset = l1_entry & L.L1E_OFFSET_MASK
        if not l2_offset or l2_offset % cs or l2_offset + cs > drv.node.file.getlength():
            continue
        mismatch(
            l1_entry,
            l2_offset,
            ("l1", l1_index),
            f"L2 cluster: l1_index={l1_index} l1_entry={l1_entry:x}",
        )
        for i, entry in enumerate(drv.map.cache.get(l2_offset)):
            host = entry & L.L2E_OFFSET_MASK
            if not host or host % cs or entry & L.OFLAG_COMPRESSED:
                continue  # no host cluster of its own (unallocated, zero, compressed)
            if (stored.get(host >> cb) == 1) != bool(entry & L.OFLAG_COPIED):
                mismatch(entry, host, ("l2", l2_offset, i), f"data cluster: l2_entry={entry:x}")
    return errors


def _repair(drv: Qcow2Driver, fix: str, mismatches) -> list[str]:
    """Apply the fixes ``fix`` allows; return qemu-img's "Repairing ..." lines."""
    rc = drv.refcounts
    messages = []
    file_clusters = -(-drv.node.file.getlength() // drv.h.cluster_size)
    # Never hand out a cluster that something references while refcounts are rewritten.
    rc.free_hint = max(rc.free_hint, file_clusters)
    for cluster, have, want in mismatches:
        if cluster >= file_clusters or want > rc.fmt.max:
            continue  # past the end of the file, or more references than the width holds
        if have > want or fix == "all":
            rc.set_value(cluster, want)
            messages.append(f"Repairing cluster {cluster} refcount={have} reference={want}")
    if fix == "all":
        # COPIED flags follow the refcounts as they are after the repair above.
        for item in _copied_errors(drv, CheckResult()):
            if item[0] == "l1":
                _, l1_index, count = item
                entry = drv.map.l1[l1_index]
                fixed = entry | L.OFLAG_COPIED if count == 1 else entry & ~L.OFLAG_COPIED
                drv.map.set_l1_entry(l1_index, fixed)
                messages.append(
                    f"Repairing OFLAG_COPIED L2 cluster: l1_index={l1_index} "
                    f"l1_entry={entry:x} refcount={count}"
                )
            else:
                _, l2_offset, i, count = item
                table = drv.map.cache.get(l2_offset)
                entry = table[i]
                table[i] = entry | L.OFLAG_COPIED if count == 1 else entry & ~L.OFLAG_COPIED
                drv.map.cache.mark_dirty(l2_offset, table)
                messages.append(
                    f"Repairing OFLAG_COPIED data cluster: l2_entry={entry:x} refcount={count}"
                )
    rc.flush()
    drv.node.file.flush()
    drv.map.cache.flush()
    drv.node.file.flush()
    return messages


def check_image(drv: Qcow2Driver, fix: str = "") -> CheckResult:
    """Check (and with ``fix`` = "leaks" or "all", repair) the image behind ``drv``.

    After a repair the image is checked again: the counts are what remains,
    with ``leaks_fixed``/``corruptions_fixed`` saying what was repaired.
    """
    res, mismatches, copied = _scan(drv)
    if not fix or (not mismatches and not copied):
        return res
    repaired = _repair(drv, fix, mismatches)
    after, _, _ = _scan(drv)
    after.leaks_fixed = max(0, res.leaks - after.leaks)
    after.corruptions_fixed = max(0, res.corruptions - after.corruptions)
    after.messages = repaired + after.messages
    return after
