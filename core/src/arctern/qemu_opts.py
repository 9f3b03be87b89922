"""QEMU's option syntax: ``key=value,key=value`` lists with ``,,`` for a literal comma.

``-M microvm,acpi=off`` and ``-device virtio-blk-device,drive=d0`` start with
an *implied* value (the machine or driver name); :func:`parse_opts` returns it
under the name the caller gives.
"""

from __future__ import annotations

from arctern.errors import UsageError


def split_commas(text: str) -> list[str]:
    """Split on single commas; ``,,`` stands for a comma inside a value."""
    items, current, i = [], [], 0
    while i < len(text):
        char = text[i]
        if char == ",":
            if text[i + 1 : i + 2] == ",":
                current.append(",")
                i += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    items.append("".join(current))
    return items


def parse_opts(text: str, implied: str | None = None) -> dict[str, str]:
    """``"microvm,acpi=off"`` -> ``{implied: "microvm", "acpi": "off"}``.

    A key given twice keeps its last value, as QEMU does; a bare ``flag`` means ``flag=on``.
    """
    result: dict[str, str] = {}
    for n, item in enumerate(split_commas(text)):
        key, sep, value = item.partition("=")
        if not sep:
            if n == 0 and implied is not None:
                result[implied] = item
                continue
            if not key:
                raise UsageError(f"Invalid parameter '' in '{text}'")
            value = "on"
        elif not key:
            raise UsageError(f"Invalid parameter '{item}'")
        result[key] = value
    return result
