"""Parsing of open and create option values the way QEMU's option parser reads them."""

from __future__ import annotations

from typing import Any

from arctern.errors import UsageError

_SUFFIXES = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "p": 1 << 50,
    "e": 1 << 60,
}


def parse_size(name: str, value: Any) -> int:
    """A byte count: an int, or a string such as "65536", "64k", "1M", "2G"."""
    if isinstance(value, bool):
        raise UsageError(f"option '{name}': expected a size, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower()
        unit = text[-1:] if text[-1:].isalpha() else ""
        try:
            number = int(float(text[: len(text) - len(unit)]) * _SUFFIXES[unit])
        except (KeyError, ValueError):
            raise UsageError(f"option '{name}': invalid size {value!r}") from None
    if number < 0:
        raise UsageError(f"option '{name}': size must not be negative")
    return number


def parse_bool(name: str, value: Any) -> bool:
    """on/off, true/false, yes/no, 1/0 (QEMU accepts on/off; the rest for Python callers)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise UsageError(f"option '{name}': expected 'on' or 'off', got {value!r}")
