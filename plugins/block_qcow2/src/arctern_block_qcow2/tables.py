"""Big-endian 64-bit tables (L1, L2, refcount table) as native ``array('Q')``.

Converting a whole table at once with ``byteswap`` keeps per-entry access a
plain list index instead of a ``struct`` call per lookup.
"""

from __future__ import annotations

import sys
from array import array

_SWAP = sys.byteorder == "little"


def table_from_bytes(data: bytes | bytearray | memoryview) -> array:
    table = array("Q")
    table.frombytes(data)
    if _SWAP:
        table.byteswap()
    return table


def table_to_bytes(table: array) -> bytes:
    if not _SWAP:
        return table.tobytes()
    copy = array("Q", table)
    copy.byteswap()
    return copy.tobytes()


def entry_bytes(value: int) -> bytes:
    return value.to_bytes(8, "big")
