"""Sizes and durations as qemu-img and qemu-io read and print them.

* :func:`parse_size` is QEMU's ``qemu_strtosz``: a decimal number (a fraction
  is allowed) or a ``0x`` hex integer, optionally followed by one of
  ``B K M G T P E`` (either case, powers of 1024).
* :func:`human_size` is QEMU's ``size_to_str`` (``1 GiB``, ``196 KiB``) used by
  ``qemu-img info``; :func:`io_size` is qemu-io's ``cvtstr`` (``64 KiB``,
  ``1.500 MiB``, ``32 bytes``); :func:`io_time` is qemu-io's ``timestr``.
"""

from __future__ import annotations

import math
import re

from arctern.errors import UsageError

_SUFFIXES = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SIZE_RE = re.compile(r"\s*(0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]?)")
SIZE_MAX = (1 << 63) - 1


def parse_size(text: str, default_suffix: str = "b") -> int:
    """Bytes meant by ``text`` (``64k``, ``1.5G``, ``0x1000``); UsageError if not a size."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise UsageError(f"invalid size '{text}'")
    number, suffix = match.groups()
    shift = _SUFFIXES.get((suffix or default_suffix).lower())
    if shift is None:
        raise UsageError(f"invalid size suffix in '{text}'")
    if number[:2].lower() == "0x":
        if suffix:  # qemu_strtosz refuses a suffix after a hex number
            raise UsageError(f"invalid size '{text}'")
        value = int(number, 16)
    else:
        integer, _, fraction = number.partition(".")
        value = int(integer or "0") << shift
        if fraction:
            value += int(int(fraction) * (1 << shift) // 10 ** len(fraction))
    if value > SIZE_MAX:
        raise UsageError(f"size '{text}' is too large")
    return value


def size_argument(text: str, what: str = "image size") -> int:
    """:func:`parse_size` of an option, refused with qemu-img's words naming ``what``."""
    try:
        return parse_size(text)
    except UsageError:
        raise UsageError(
            f"Invalid {what} specified. You may use k, M, G, T, P or E suffixes for "
            "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes."
        ) from None


def human_size(value: int) -> str:
    """QEMU's ``size_to_str``: three significant digits and a binary unit."""
    suffixes = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
    _, exponent = math.frexp(value / (1000.0 / 1024.0))
    index = max(0, (exponent - 1) // 10) if exponent > 0 else 0
    return f"{value / (1 << (index * 10)):0.3g} {suffixes[index]}B"


def io_size(value: float) -> str:
    """qemu-io's ``cvtstr``: ``64 KiB``, ``1.500 MiB``, ``32 bytes``."""
    for shift, unit in (
        (60, "EiB"),
        (50, "PiB"),
        (40, "TiB"),
        (30, "GiB"),
        (20, "MiB"),
        (10, "KiB"),
    ):
        if value >= (1 << shift):
            text = f"{value / (1 << shift):.3f}"
            suffix = f" {unit}"
            break
    else:
        text = f"{value:f}"
        suffix = " bytes"
    cut = text.find(".000")
    return (text[:cut] if cut >= 0 else text) + suffix


def io_time(seconds: float, fixed: bool = False) -> str:
    """qemu-io's ``timestr``: ``00.01 sec`` below a second, ``H:MM:SS.ss`` above (or if fixed)."""
    whole = int(seconds)
    if whole == 0 and not fixed:
        return f"{seconds:05.2f} sec"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs + (seconds - whole):05.2f}"
