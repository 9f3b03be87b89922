"""JSON exactly as qemu-img prints it.

qemu-img builds its JSON reports from QEMU dictionaries (QDict), which keep
their keys in 512 hash buckets. The pretty printer walks the buckets in
order, and within a bucket the most recently inserted key comes first. Scripts
that diff qemu-img output against ours see the same key order only if we
reproduce that walk, so :func:`dumps` orders every dict the QDict way.
"""

from __future__ import annotations

import json
from typing import Any

_BUCKETS = 512


def _tdb_hash(key: str) -> int:
    """QDict's key hash (the TDB hash QEMU's qdict.c uses)."""
    data = key.encode()
    value = (0x238F13AF * len(data)) & 0xFFFFFFFF
    for i, byte in enumerate(data):
        value = (value + (byte << (i * 5 % 24))) & 0xFFFFFFFF
    return (1103515243 * value + 12345) & 0xFFFFFFFF


def qdict_order(obj: Any) -> Any:
    """``obj`` with every dict's keys in QDict iteration order (insertion order = given order)."""
    if isinstance(obj, dict):
        position = {key: i for i, key in enumerate(obj)}
        keys = sorted(obj, key=lambda k: (_tdb_hash(k) % _BUCKETS, -position[k]))
        return {key: qdict_order(obj[key]) for key in keys}
    if isinstance(obj, list):
        return [qdict_order(item) for item in obj]
    return obj


def dumps(obj: Any) -> str:
    """qemu-img's pretty JSON (4-space indent) in QDict key order, without a final newline."""
    return _pretty(qdict_order(obj), 0)


def _pretty(obj: Any, level: int) -> str:
    """QEMU's JSON writer: like ``json.dumps(indent=4)``, but an empty list or dict
    still opens a line (``"flags": [`` then ``]`` on the next, indented)."""
    if isinstance(obj, dict):
        items = [f"{json.dumps(key)}: {_pretty(value, level + 1)}" for key, value in obj.items()]
        opening, closing = "{", "}"
    elif isinstance(obj, list):
        items = [_pretty(value, level + 1) for value in obj]
        opening, closing = "[", "]"
    else:
        return json.dumps(obj)
    inner, outer = "\n" + "    " * (level + 1), "\n" + "    " * level
    return opening + (inner + ("," + inner).join(items) if items else "") + outer + closing
