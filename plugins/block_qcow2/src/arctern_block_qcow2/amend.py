"""``qemu-img amend`` for qcow2: the compatibility level and lazy refcounts, changed in place.

An upgrade to version 3 (compat=1.1) only rewrites the header. A downgrade to
version 2 (compat=0.10) is refused when the image holds what version 2 cannot
express (zstd compression, refcounts other than 16 bits, persistent bitmaps,
snapshots, preallocated zero clusters, zero clusters over a backing file);
zero clusters of an image without a backing file become unallocated (they
read as zeroes all the same), as QEMU does. Lazy refcounts are turned off
only once every refcount is written back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arctern.errors import UsageError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.bitmaps import read_bitmaps
from arctern_block_qcow2.options import parse_bool

if TYPE_CHECKING:
    from arctern_block_qcow2.driver import Qcow2Driver

AMENDABLE = ("compat", "lazy_refcounts")
_VERSIONS = {"0.10": 2, "v2": 2, "1.1": 3, "v3": 3}


def amend_image(drv: Qcow2Driver, options: dict[str, Any]) -> None:
    for key in options:
        if key not in AMENDABLE:
            hint = "; This option is only supported for image creation" * (
                key in drv.create_options
            )
            raise UsageError(f"Invalid parameter '{key}'{hint}")
    h = drv.h
    version = h.version
    if "compat" in options:
        if str(options["compat"]) not in _VERSIONS:
            raise UsageError(f"Invalid compatibility level: '{options['compat']}'")
        version = _VERSIONS[str(options["compat"])]
    lazy = h.lazy_refcounts
    if "lazy_refcounts" in options:
        lazy = parse_bool("lazy_refcounts", options["lazy_refcounts"])
    if lazy and not h.lazy_refcounts and version < 3:  # (a downgrade drops them, as QEMU)
        raise UsageError(
            "Lazy refcounts only supported with compatibility level 1.1 and above "
            "(use compat=1.1 or greater)"
        )
    drv._begin_write()
    drv._writeback()  # every refcount on disk, the image clean
    if version < h.version:
        _drop_zero_clusters(drv, _downgrade_problems(drv))
    h.version = version
    h.header_length = L.V3_HEADER_LENGTH if version >= 3 else L.V2_HEADER_LENGTH
    if lazy:
        h.compatible_features |= L.COMPAT_LAZY_REFCOUNTS
    else:
        h.compatible_features &= ~L.COMPAT_LAZY_REFCOUNTS
    if version < 3:
        h.incompatible_features = h.compatible_features = h.autoclear_features = 0
    drv.lazy = lazy and version >= 3
    drv.node.file.pwrite(0, h.pack().ljust(h.cluster_size, b"\0"))
    drv.node.file.flush()


def _downgrade_problems(drv: Qcow2Driver) -> list[int]:
    """The L1 indexes of the L2 tables holding zero clusters; raise if version 2 cannot
    hold the image (nothing is changed before everything is known to be possible)."""
    h = drv.h
    why = None
    if h.compression_type != L.COMPRESSION_ZLIB:
        why = "its compression type is not zlib"
    elif h.refcount_order != 4:
        why = "its refcounts are not 16 bits wide"
    elif h.nb_snapshots:
        why = "it has internal snapshots"
    elif read_bitmaps(drv.node.file, h, drv._name)[0]:
        why = "it has persistent bitmaps"
    with_zeroes = []
    for l1_index in range(len(drv.map.l1)):
        table = drv.map.l2_table(l1_index)
        zeroes = [] if table is None else [e for e in table if e & L.OFLAG_ZERO]
        if not zeroes:
            continue
        if drv.node.backing is not None or any(e & L.L2E_OFFSET_MASK for e in zeroes):
            why = "it has zero clusters over a backing file, or preallocated ones"
        with_zeroes.append(l1_index)
    if why:
        raise UsageError(f"Cannot downgrade '{drv._name}' to compat=0.10: {why}")
    return with_zeroes


def _drop_zero_clusters(drv: Qcow2Driver, l1_indexes: list[int]) -> None:
    """Zero clusters of an image without backing file become unallocated."""
    for l1_index in l1_indexes:
        l2_offset, table = drv.map.writable_l2(l1_index)
        for i, entry in enumerate(table):
            if entry & L.OFLAG_ZERO:
                table[i] = 0
        drv.map.cache.mark_dirty(l2_offset, table)
    drv.map.cache.flush()
    drv.node.file.flush()
