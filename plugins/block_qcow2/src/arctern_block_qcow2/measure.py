"""How big a new qcow2 image gets (``qemu-img measure``), computed as QEMU's qcow2_measure.

"fully allocated" is the size with every cluster of the virtual disk allocated
and all the metadata that needs; "required" replaces the data part with the
clusters the source really holds (runs of data rounded out to whole clusters).
The refcount structure's size is found as a fixed point: it must count the
clusters it occupies itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arctern_block_qcow2.create import parse_create_options

L1E_SIZE = L2E_SIZE = REFTABLE_ENTRY_SIZE = BITMAP_TABLE_ENTRY_SIZE = 8
SECTOR = 512


def _div_up(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, b: int) -> int:
    return _div_up(a, b) * b


def refcount_metadata_size(clusters: int, cluster_size: int, refcount_bits: int) -> int:
    """Bytes of refcount table and blocks needed to count ``clusters`` and themselves."""
    per_table_cluster = cluster_size // REFTABLE_ENTRY_SIZE
    per_block = cluster_size * 8 // refcount_bits
    table = blocks = n = 0
    while True:
        last = n
        blocks = _div_up(clusters + table + blocks, per_block)
        table = _div_up(blocks, per_table_cluster)
        n = clusters + blocks + table
        if n == last:
            return (blocks + table) * cluster_size


def prealloc_size(size: int, cluster_size: int, refcount_bits: int) -> int:
    """File size of an image of ``size`` bytes with every cluster allocated."""
    aligned = _round_up(size, cluster_size)
    meta = cluster_size  # header
    l2_entries = _round_up(aligned // cluster_size, cluster_size // L2E_SIZE)
    meta += l2_entries * L2E_SIZE
    l1_entries = _round_up(l2_entries * L2E_SIZE // cluster_size, cluster_size // L1E_SIZE)
    meta += l1_entries * L1E_SIZE
    meta += refcount_metadata_size((meta + aligned) // cluster_size, cluster_size, refcount_bits)
    return meta + aligned


def bitmaps_size(size: int, cluster_size: int, bitmaps: Iterable[tuple[str, int]]) -> int:
    """Room for the source's persistent bitmaps (name, granularity), all allocated."""
    total = directory = 0
    for name, granularity in bitmaps:
        clusters = _div_up(_div_up(_div_up(size, granularity), 8), cluster_size)
        total += clusters * cluster_size
        total += _round_up(clusters * BITMAP_TABLE_ENTRY_SIZE, cluster_size)
        directory += _round_up(24 + len(name.encode()), 8)
    return total + _round_up(directory, cluster_size)


def measure(
    size: int,
    options: dict[str, Any],
    data: Iterable[tuple[int, int]] | None,
    bitmaps: list[tuple[str, int]] | None,
) -> dict[str, int]:
    """qemu-img measure's figures for a qcow2 image made with ``options``."""
    st = parse_create_options(options)
    cs = st.cluster_size
    size = _round_up(size, SECTOR)
    if st.preallocation in ("full", "falloc"):
        required = size
    else:  # the data clusters the source holds (none for an empty image)
        required = _data_clusters(data or (), cs)
    fully = prealloc_size(size, cs, st.refcount_bits)
    result = {"required": fully - size + required, "fully-allocated": fully}
    if bitmaps is not None and st.version >= 3:
        result["bitmaps"] = bitmaps_size(size, cs, bitmaps)
    return result


def _data_clusters(data: Iterable[tuple[int, int]], cs: int) -> int:
    """Bytes of the clusters the data runs touch, counted as QEMU's walk counts them:
    a run is rounded out to whole clusters and the walk resumes after them."""
    required = resume = 0
    for offset, length in data:
        start = max(offset, resume)
        if start >= offset + length:
            continue  # inside a cluster already counted
        resume = _round_up(offset + length, cs)
        required += start % cs + resume - start
    return required
