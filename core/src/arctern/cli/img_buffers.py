"""Buffer comparisons at memcmp speed, for the tools' hot paths.

CPython compares two memoryviews element by element (about 300 MB/s), while
``bytes``/``bytearray`` methods given any buffer use ``memcmp`` (tens of GB/s).
So data is never compared with ``view == other_view``: equal-length
comparisons go through :func:`bytes.startswith` on a bytes-like object.
"""

from __future__ import annotations

ZERO_CHUNK = bytes(2 << 20)


def is_zero(view: memoryview) -> bool:
    """Whether every byte of ``view`` is zero."""
    step = len(ZERO_CHUNK)
    return all(
        ZERO_CHUNK.startswith(view[start : start + step]) for start in range(0, len(view), step)
    )


def same(data: bytes | bytearray, view: memoryview) -> bool:
    """Whether ``data[:len(view)] == view`` (``data`` may be longer: a pooled buffer)."""
    return data.startswith(view)


def filled_with(view: memoryview, byte: int) -> bool:
    """Whether every byte of ``view`` equals ``byte``."""
    return (bytes([byte]) * len(view)).startswith(view)


def first_difference(one: memoryview, two: memoryview, granule: int) -> int:
    """Offset of the first ``granule``-sized piece where two equally long buffers differ."""
    for start in range(0, len(one), granule):
        piece = one[start : start + granule]
        if not bytes(piece).startswith(two[start : start + granule]):
            return start
    return len(one)
