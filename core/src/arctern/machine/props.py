"""Typed properties of devices and machine types (-device NAME,k=v, -global, -M NAME,k=v).

A :class:`Prop` turns a value given as text on the command line (or as a
Python value by a machine type) into the typed value a device reads from
``self.props``. Error messages are QEMU's, so scripts and habits carry over:
``Parameter 'iobase' expects uint16_t``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arctern.errors import MachineError

_ON = ("on", "yes", "true", "y")
_OFF = ("off", "no", "false", "n")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtTpPeE]?)[bB]?")
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


@dataclass(frozen=True)
class Prop:
    """One typed property: its default, how to parse text, and what a bad value is called."""

    default: Any
    kind: str  # QEMU's type word in error messages: "integer", "'on' or 'off'", "a size"
    parser: Callable[[str], Any]
    check: Callable[[Any], bool] | None = None
    description: str = ""
    parse_error: str = ""  # what unparseable text "expects", if not ``kind``
    type_name: str = ""  # how ``-device NAME,help`` names the type ("uint32", "bool")

    def parse(self, text: str) -> Any:
        """Parse command-line text; raise :class:`MachineError` naming the expected type.

        Like QEMU, text that is no value at all gets ``parse_error`` (``expects
        integer``); a value out of range gets the precise type (``expects uint16_t``).
        """
        try:
            value = self.parser(text)
        except (ValueError, OverflowError):
            raise MachineError(f"expects {self.parse_error or self.kind}") from None
        if self.check is not None and not self.check(value):
            raise MachineError(f"expects {self.kind}")
        return value

    def convert(self, value: Any) -> Any:
        """Accept text (parsed) or an already typed Python value (checked)."""
        if isinstance(value, str) and self.parser is not str:
            return self.parse(value)
        if self.check is not None and not self.check(value):
            raise MachineError(f"expects {self.kind}")
        return value


def parse_int(text: str) -> int:
    """C ``strtoll`` base 0 as QEMU uses it: decimal, 0x hex, leading-0 octal."""
    text = text.strip()
    body = text.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1] not in "xXbBoO":
        return int(text.replace(body, "0o" + body[1:], 1), 0)
    return int(text, 0)


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _ON:
        return True
    if low in _OFF:
        return False
    raise ValueError(text)


def parse_size(text: str) -> int:
    """QEMU sizes: bytes, or a number with a k/M/G/T/P/E suffix (binary multiples)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(text)
    number, suffix = match.groups()
    value = float(number) if "." in number else int(number)
    result = int(value * (1 << _SIZE_SHIFT[suffix.lower()]))
    if result >= 1 << 64:
        raise ValueError(text)
    return result


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def prop_int(
    default: int | None, *, bits: int = 32, signed: bool = False, description: str = ""
) -> Prop:
    """An integer property; ``bits``/``signed`` give its C type (uint16_t, int32_t, ...)."""
    low, high = _int_range(bits, signed)
    kind = f"{'int' if signed else 'uint'}{bits}_t" if bits != 64 or signed else "uint64_t"

    def check(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    return Prop(
        default, kind, parse_int, check, description, parse_error="integer", type_name=kind[:-2]
    )


def prop_bool(default: bool | None, *, description: str = "") -> Prop:
    """An on/off property (also yes/no, true/false)."""
    return Prop(
        default,
        "'on' or 'off'",
        parse_bool,
        lambda v: isinstance(v, bool),
        description,
        type_name="bool",
    )


def prop_str(default: str | None, *, description: str = "") -> Prop:
    """A string property (chardev and drive ids, serial numbers)."""
    return Prop(
        default,
        "a string",
        str,
        lambda v: v is None or isinstance(v, str),
        description,
        type_name="str",
    )


def prop_size(default: int | None, *, description: str = "") -> Prop:
    """A byte size (``64M``, ``4096``)."""
    return Prop(
        default,
        "a non-negative number below 2^64",
        parse_size,
        lambda v: isinstance(v, int) and 0 <= v < 1 << 64,
        description,
        type_name="size",
    )


def prop_choice(default: str, choices: tuple[str, ...], *, description: str = "") -> Prop:
    """A string property restricted to ``choices``."""
    on_off_auto = set(choices) == {"on", "off", "auto"}
    return Prop(
        default,
        " or ".join(f"'{c}'" for c in choices),
        str,
        lambda v: v in choices,
        description,
        type_name="OnOffAuto" if on_off_auto else "str",
    )


def apply_props(
    owner: str, declared: dict[str, Prop], given: dict[str, Any], *, check_unknown: bool = True
) -> dict[str, Any]:
    """Fill ``declared`` defaults and convert ``given`` values; QEMU's messages on errors.

    Python callers may spell ``force-legacy`` as ``force_legacy``.
    """
    values = {name: prop.default for name, prop in declared.items()}
    for key, value in given.items():
        name = key if key in declared else key.replace("_", "-")
        prop = declared.get(name)
        if prop is None:
            if check_unknown:
                raise MachineError(f"Property '{owner}.{key}' not found")
            continue
        try:
            values[name] = prop.convert(value)
        except MachineError as exc:
            if isinstance(value, str):
                raise MachineError(f"Parameter '{name}' {exc}") from None
            raise MachineError(f"Property '{owner}.{name}' {exc}, got {value!r}") from None
    return values
