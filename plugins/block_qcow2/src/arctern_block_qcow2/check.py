"""Consistency check and repair, computed the way ``qemu-img check`` does.

Every reference the metadata makes (header, L1 tables, L2 tables, data and
compressed clusters, refcount table and blocks, snapshot table) is counted
in memory and compared with the stored refcounts: a stored refcount above
the references is a leak, below is a corruption. A reference reaching a
cluster or more past the end of the file is itself a corruption and is not
counted; tables are read where the entries point, aligned or not (past the
end of the file they read as zeroes), so the findings are qemu-img's. The COPIED flags of the
active L1 and its L2 tables are checked against the stored refcounts.
Repair (``fix="leaks"`` or ``"all"``) sets refcounts to the reference counts
and fixes COPIED flags, then checks again, as ``qemu-img check -r`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arctern.block.driver import CheckResult
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.bitmaps import bitmap_references
from arctern_block_qcow2.mapping import Kind, compressed_extent, entry_kind, host_clusters
from arctern_block_qcow2.refscan import References, differing, unpack
from arctern_block_qcow2.tables import table_from_bytes

if TYPE_CHECKING:
    from arctern_block_qcow2.driver import Qcow2Driver


def _count_region(drv: Qcow2Driver, refs: References, res: CheckResult, offset: int, size: int):
    """Count a reference to every cluster of [offset, offset + size), as QEMU's
    ``qcow2_inc_refcounts_imrt``: a region reaching a cluster or more past the end of
    the file is a corruption and is not counted (nothing there can be repaired)."""
    if size <= 0:
        return
    if offset + size - drv.node.file.getlength() >= drv.h.cluster_size:
        res.corruptions += 1
        res.messages.append(
            "ERROR: counting reference for region exceeding the end of the file by one "
            f"cluster or more: offset 0x{offset:x} size 0x{size:x}"
        )
        return
    cb = drv.h.cluster_bits
    first = offset >> cb
    refs.add(first, ((offset + size - 1) >> cb) - first + 1)


def _l2_table(drv: Qcow2Driver, l2_offset: int):
    """The L2 table at ``l2_offset`` as check sees it: what the cache holds, else the file's
    bytes at that offset (aligned or not), reading as zeroes past the end of the file."""
    if l2_offset in drv.map.cache:
        return drv.map.cache.get(l2_offset)
    cs = drv.h.cluster_size
    buf = bytearray(cs)
    n = max(0, min(cs, drv.node.file.getlength() - l2_offset))
    if n:
        drv.node.file.pread(l2_offset, memoryview(buf)[:n])
    return table_from_bytes(buf)


def _count_l1(drv: Qcow2Driver, refs: References, l1, res: CheckResult, active: bool) -> None:
    cs = drv.h.cluster_size
    seen: set[int] = set()
    for l1_entry in l1:
        l2_offset = l1_entry & L.L1E_OFFSET_MASK
        if l1_entry & L.L1E_RESERVED_MASK:
            res.corruptions += 1
            res.messages.append(f"ERROR found L1 entry with reserved bits set: {l1_entry:x}")
        if not l2_offset:
            continue
        _count_region(drv, refs, res, l2_offset, cs)
        if l2_offset % cs:
            res.corruptions += 1
            res.messages.append(
                f"ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; L1 entry corrupted"
            )
        if l2_offset in seen:
            # Its references are counted once: a hostile L1 naming one table a million
            # times must not cost a million table scans.
            res.corruptions += 1
            res.messages.append(f"ERROR L2 table at 0x{l2_offset:x} is used twice by one L1 table")
            continue
        seen.add(l2_offset)
        if l2_offset < drv.node.file.getlength():  # past the end it reads as zeroes
            _count_l2(drv, refs, _l2_table(drv, l2_offset), res, active)


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
            if cluster < dense_len:  # inside the file: nothing to check but the count
                dense[cluster] += 1
                highest = max(highest, cluster)
            else:
                _count_region(drv, refs, res, host, cs)
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
                what = "Preallocated" if kind is Kind.ZERO_ALLOC else "Data"
                res.corruptions += 1
                res.messages.append(
                    f"ERROR offset={host:x}: {what} cluster is not properly aligned; "
                    "L2 entry corrupted."
                )
            allocated += 1
            if next_contiguous and host != next_contiguous:
                fragmented += 1
            next_contiguous = host + cs
        if kind is Kind.COMPRESSED:
            _count_region(drv, refs, res, *compressed_extent(entry, cb))
        elif held:
            _count_region(drv, refs, res, host, cs)
    refs.highest = max(refs.highest, highest)
    if active:
        res.allocated_clusters += allocated
        res.fragmented_clusters += fragmented
        res.compressed_clusters += compressed


def _count_references(drv: Qcow2Driver, res: CheckResult, nb_clusters: int) -> References:
    h, cb, cs = drv.h, drv.h.cluster_bits, drv.h.cluster_size
    refs = References(nb_clusters)
    _count_region(drv, refs, res, 0, cs)
    _count_region(drv, refs, res, h.l1_table_offset, h.l1_size * 8)
    _count_l1(drv, refs, drv.map.l1, res, active=True)
    if drv.snapshots:
        _count_region(drv, refs, res, h.snapshots_offset, drv.snapshot_table_bytes)
    for snap in drv.snapshots:
        _count_region(drv, refs, res, snap.l1_table_offset, snap.l1_size * 8)
        _count_l1(drv, refs, drv.map.read_l1(snap.l1_table_offset, snap.l1_size), res, active=False)
    _count_region(drv, refs, res, h.refcount_table_offset, h.refcount_table_clusters * cs)
    for first, count in bitmap_references(drv.node.file, h, drv._name):
        _count_region(drv, refs, res, first << cb, count * cs)
    for offset in _Stored(drv, res).block_offsets():
        _count_region(drv, refs, res, offset, cs)
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
    beyond = [(c, n) for c, n in sorted(refs.sparse.items()) if c >= nb_clusters]
    beyond += [(c, refs.get(c)) for c in refs.nonzero(max(covered, nb_clusters), len(refs.dense))]
    found += [(c, have, n) for c, n in beyond if (have := stored.get(c)) != n]
    return found, max([highest] + [c for c, _ in beyond])


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

    def mismatch(entry: int, offset: int, item: tuple, what: str) -> None:
        rc = stored.get(offset >> cb)
        if (rc == 1) != bool(entry & L.OFLAG_COPIED):
            res.corruptions += 1
            res.messages.append(f"ERROR OFLAG_COPIED {what} refcount={rc}")
            errors.append((*item, rc))

    for l1_index, l1_entry in enumerate(drv.map.l1):
        l2_offset = l1_entry & L.L1E_OFFSET_MASK
        if not l2_offset:
            continue
        mismatch(
            l1_entry,
            l2_offset,
            ("l1", l1_index),
            f"L2 cluster: l1_index={l1_index} l1_entry={l1_entry:x}",
        )
        if l2_offset >= drv.node.file.getlength():
            continue  # reads as zeroes: no entries
        for i, entry in enumerate(_l2_table(drv, l2_offset)):
            host = entry & L.L2E_OFFSET_MASK
            if not host or entry & L.OFLAG_COMPRESSED:
                continue  # no host cluster of its own (unallocated, zero, compressed)
            if (stored.get(host >> cb) == 1) != bool(entry & L.OFLAG_COPIED):
                mismatch(entry, host, ("l2", l2_offset, i), f"data cluster: l2_entry={entry:x}")
    return errors


def _repair(drv: Qcow2Driver, fix: str, mismatches) -> tuple[list[str], int, int]:
    """Apply the fixes ``fix`` allows; return qemu-img's "Repairing ..." lines and the
    number of leaks and of corruptions fixed (COPIED flags counted as qemu-img does:
    only those still wrong once the refcounts are repaired)."""
    rc = drv.refcounts
    messages = []
    counts = [0, 0]  # leaks fixed, corruptions fixed
    freed: list[int] = []
    file_clusters = -(-drv.node.file.getlength() // drv.h.cluster_size)
    # Never hand out a cluster that something references while refcounts are rewritten.
    rc.free_hint = max(rc.free_hint, file_clusters)
    for cluster, have, want in mismatches:
        if want > rc.fmt.max:
            continue  # more references than the width holds
        # A reference is never more than one cluster past the end of the file (a region
        # reaching further is not counted), so repairs stay near the end of the file.
        if have > want or fix == "all":
            rc.set_value(cluster, want)
            counts[have < want] += 1
            if not want:
                freed.append(cluster)
            messages.append(f"Repairing cluster {cluster} refcount={have} reference={want}")
    if fix == "all":
        # COPIED flags follow the refcounts as they are after the repair above.
        for item in _copied_errors(drv, CheckResult()):
            counts[1] += 1
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
    cs = drv.h.cluster_size
    for cluster in freed:  # unused now: give the space back (with the node's discard=unmap)
        drv.node.file.pdiscard(cluster * cs, cs)
    return messages, counts[0], counts[1]


def check_image(drv: Qcow2Driver, fix: str = "") -> CheckResult:
    """Check (and with ``fix`` = "leaks" or "all", repair) the image behind ``drv``.

    After a repair the image is checked again: the counts are what remains,
    with ``leaks_fixed``/``corruptions_fixed`` saying what was repaired.
    """
    res, mismatches, copied = _scan(drv)
    if not fix or (not mismatches and not copied):
        return res
    repaired, after_leaks_fixed, corruptions_fixed = _repair(drv, fix, mismatches)
    after, _, _ = _scan(drv)
    after.leaks_fixed, after.corruptions_fixed = after_leaks_fixed, corruptions_fixed
    # As qemu-img: what the first pass found (COPIED flags are reported as repaired
    # instead), then the repairs; the caller's second check reports what remains.
    found = [m for m in res.messages if not m.startswith("ERROR OFLAG_COPIED")]
    after.messages = found + repaired
    return after
