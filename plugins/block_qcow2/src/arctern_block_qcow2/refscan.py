"""Bulk comparison of computed references with stored refcounts (for check).

The references are counted into an ``array('Q')`` (sparse beyond a cap, so a
huge sparse file cannot make us allocate per cluster). They are compared
with the stored refcounts one refcount block at a time: the references are
packed into the block's on-disk format and compared as bytes, so a
consistent block costs a few C-level operations whatever its width; only
blocks that differ are walked entry by entry.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator
from itertools import chain

from arctern_block_qcow2.refcount import RefblockFormat

_ARRAY_CODES = {8: "B", 16: "H", 32: "I", 64: "Q"}
#: Clusters counted in the dense array; references beyond go to a dict.
DENSE_LIMIT = 1 << 23
#: Entries compared per step inside a block that differs (a multiple of 8).
CHUNK = 4096


class References:
    """Reference counts per host cluster, as check computes them."""

    def __init__(self, nb_clusters: int) -> None:
        self.dense = array("Q", bytes(8 * min(nb_clusters, DENSE_LIMIT)))
        self.sparse: dict[int, int] = {}
        self.highest = -1

    def add(self, first: int, count: int = 1) -> None:
        n = len(self.dense)
        for cluster in range(first, first + count):
            if cluster < n:
                self.dense[cluster] += 1
            else:
                self.sparse[cluster] = self.sparse.get(cluster, 0) + 1
        self.highest = max(self.highest, first + count - 1)

    def get(self, cluster: int) -> int:
        if cluster < len(self.dense):
            return self.dense[cluster]
        return self.sparse.get(cluster, 0)

    def slice(self, lo: int, hi: int) -> array:
        if hi <= len(self.dense):
            return self.dense[lo:hi]
        part = self.dense[lo:hi]
        part.extend(self.sparse.get(c, 0) for c in range(max(lo, len(self.dense)), hi))
        return part

    def nonzero(self, lo: int, hi: int) -> Iterator[int]:
        """Clusters in [lo, hi) with references, skipping empty chunks in bulk."""
        for start in range(lo, min(hi, len(self.dense)), CHUNK):
            part = self.dense[start : min(hi, start + CHUNK)]
            if part.count(0) != len(part):
                yield from (start + i for i, v in enumerate(part) if v)
        yield from sorted(c for c in self.sparse if lo <= c < hi)


def pack(fmt: RefblockFormat, values: array) -> bytes | None:
    """``values`` in the on-disk refcount block format, or None if one does not fit."""
    if values and max(values) > fmt.max:
        return None
    code = _ARRAY_CODES.get(fmt.bits)
    if code:
        packed = array(code, values)
        if sys.byteorder == "little" and packed.itemsize > 1:
            packed.byteswap()
        return packed.tobytes()
    per_byte = 8 // fmt.bits
    padded = array("B", values).tobytes() + bytes(-len(values) % per_byte)
    total = 0
    for k in range(per_byte):  # entry k of each byte sits at bit k*bits, least first
        total |= int.from_bytes(padded[k::per_byte], "little") << (k * fmt.bits)
    return total.to_bytes(len(padded) // per_byte, "little")


def unpack(fmt: RefblockFormat, block: bytes | bytearray) -> list[int]:
    """Every entry of a refcount block, decoded in bulk."""
    code = _ARRAY_CODES.get(fmt.bits)
    if code:
        values = array(code, bytes(block))
        if sys.byteorder == "little" and values.itemsize > 1:
            values.byteswap()
        return values.tolist()
    per_byte = 8 // fmt.bits
    byte_values = [[(b >> (k * fmt.bits)) & fmt.max for k in range(per_byte)] for b in range(256)]
    return list(chain.from_iterable(map(byte_values.__getitem__, block)))


def differing(
    fmt: RefblockFormat, block: bytes | bytearray, want: array, base: int
) -> Iterator[tuple[int, int, int]]:
    """(cluster, stored, referenced) for entries of one block where the two differ.

    ``want`` covers entries [0, len(want)) of the block; ``base`` is its first cluster.
    """
    for start in range(0, len(want), CHUNK):
        stop = min(len(want), start + CHUNK)
        part = want[start:stop]
        packed = pack(fmt, part) if (stop - start) * fmt.bits % 8 == 0 else None
        if packed is not None and packed == block[start * fmt.bits // 8 : stop * fmt.bits // 8]:
            continue
        for i in range(start, stop):
            have = fmt.get(block, i)
            if have != want[i]:
                yield base + i, have, want[i]
