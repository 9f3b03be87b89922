"""Declarative, versioned device state (QEMU's VMStateDescription in Python form).

A device declares what it must migrate; migration saves, encodes, decodes and
loads it with no per-device stream code::

    vmstate = VMState("isa-serial", 2, [
        u8("regs.ier"), u8("lcr"), buffer("rx_fifo"),
        array("scratch", "u8", 4),
        u16("divider", since=2),          # added by version 2
    ])

* :meth:`VMState.save` turns the object into plain data (a dict, with nested
  dicts for ``struct`` and lists of dicts for ``struct_list``);
* :meth:`VMState.load` puts plain data of a given version back; a field newer
  than that version keeps what ``reset()`` left;
* :meth:`VMState.encode` / :meth:`VMState.decode`: a compact, bounds-checked
  binary form (name, version, then the fields of that version in order).
  Hostile input raises :class:`arctern.errors.StreamError`, never anything
  else, and allocates no more than the input's own size.
"""

from __future__ import annotations

import struct as _struct
from array import array as _array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arctern.errors import StreamError

_INTS = {
    "u8": ("B", 0, 0xFF),
    "u16": ("<H", 0, 0xFFFF),
    "u32": ("<I", 0, 0xFFFF_FFFF),
    "u64": ("<Q", 0, 0xFFFF_FFFF_FFFF_FFFF),
    "i32": ("<i", -(1 << 31), (1 << 31) - 1),
    "i64": ("<q", -(1 << 63), (1 << 63) - 1),
}
_ARRAY_CODES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i32": "i", "i64": "q"}
_U32 = _struct.Struct("<I")
_MAX_NAME = 255


@dataclass(frozen=True)
class Field:
    """One migrated attribute. ``kind``: an int kind, bool, buffer, array, struct, struct_list."""

    attr: str
    kind: str
    since: int = 1
    length: int | None = None  # array: element count; buffer: exact size (None: any)
    element: str = ""  # array element kind
    vmstate: VMState | None = None  # struct, struct_list
    factory: Callable[[], Any] | None = None  # struct_list: makes an element to load into


def _int_field(kind: str) -> Callable[..., Field]:
    def make(attr: str, *, since: int = 1) -> Field:
        return Field(attr, kind, since)

    make.__name__ = kind
    make.__doc__ = f"A {kind} integer attribute."
    return make


u8 = _int_field("u8")
u16 = _int_field("u16")
u32 = _int_field("u32")
u64 = _int_field("u64")
i32 = _int_field("i32")
i64 = _int_field("i64")


def boolean(attr: str, *, since: int = 1) -> Field:
    return Field(attr, "bool", since)


def buffer(attr: str, *, length: int | None = None, since: int = 1) -> Field:
    """bytes or bytearray; a bytearray is refilled in place where its views allow it."""
    return Field(attr, "buffer", since, length=length)


def array(attr: str, kind: str, length: int, *, since: int = 1) -> Field:
    """A fixed-length list of ``kind`` integers ("u8" .. "i64")."""
    if kind not in _ARRAY_CODES:
        raise ValueError(f"unknown array element kind {kind!r}")
    return Field(attr, "array", since, length=length, element=kind)


def struct(attr: str, vmstate: VMState, *, since: int = 1) -> Field:
    """A nested object with its own VMState, loaded into the existing object."""
    return Field(attr, "struct", since, vmstate=vmstate)


def struct_list(
    attr: str, vmstate: VMState, factory: Callable[[], Any], *, since: int = 1
) -> Field:
    """A list of nested objects; ``factory()`` makes each one before loading into it."""
    return Field(attr, "struct_list", since, vmstate=vmstate, factory=factory)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, dotted: str, value: Any) -> None:
    head, _, last = dotted.rpartition(".")
    if head:
        obj = _get(obj, head)
    setattr(obj, last, value)


class VMState:
    """The migratable state of one kind of object, at version ``version``."""

    def __init__(
        self, name: str, version: int, fields: Sequence[Field], minimum_version: int = 1
    ) -> None:
        if not 1 <= minimum_version <= version:
            raise ValueError(f"{name}: need 1 <= minimum_version <= version")
        if len(name.encode()) > _MAX_NAME:
            raise ValueError(f"{name}: name too long")
        for f in fields:
            if not 1 <= f.since <= version:
                raise ValueError(f"{name}: field {f.attr} since={f.since} beyond version {version}")
        self.name = name
        self.version = version
        self.minimum_version = minimum_version
        self.fields = tuple(fields)

    def __repr__(self) -> str:
        return f"<VMState {self.name} v{self.version}>"

    def fields_of(self, version: int) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.since <= version)

    def check_version(self, version: int) -> None:
        if not self.minimum_version <= version <= self.version:
            raise StreamError(
                f"{self.name}: state version {version} is not supported "
                f"(this build loads versions {self.minimum_version} to {self.version})"
            )

    # --- plain data ------------------------------------------------------------

    def save(self, obj: Any) -> dict[str, Any]:
        """The object's state as plain data (ints, bools, bytes, lists, dicts)."""
        data: dict[str, Any] = {}
        for f in self.fields:
            value = _get(obj, f.attr)
            if f.kind == "struct":
                data[f.attr] = f.vmstate.save(value)
            elif f.kind == "struct_list":
                data[f.attr] = [f.vmstate.save(item) for item in value]
            elif f.kind == "buffer":
                data[f.attr] = bytes(value)
            elif f.kind == "array":
                data[f.attr] = [int(v) for v in value]
            elif f.kind == "bool":
                data[f.attr] = bool(value)
            else:
                data[f.attr] = int(value)
        return data

    def load(self, obj: Any, data: dict[str, Any], version: int) -> None:
        """Put ``data`` (saved at ``version``) back into ``obj``; checks every value first."""
        self.check_version(version)
        self._validate(data, version)
        self._assign(obj, data, version)

    def _validate(self, data: Any, version: int) -> None:
        if not isinstance(data, dict):
            raise StreamError(f"{self.name}: state is not a mapping")
        for f in self.fields_of(version):
            if f.attr not in data:
                raise StreamError(f"{self.name}: state lacks field {f.attr}")
            _check_value(self.name, f, data[f.attr])

    def _assign(self, obj: Any, data: dict[str, Any], version: int) -> None:
        for f in self.fields_of(version):
            value = data[f.attr]
            if f.kind == "struct":
                f.vmstate._assign(_get(obj, f.attr), value, f.vmstate.version)
            elif f.kind == "struct_list":
                items = []
                for item_data in value:
                    item = f.factory()
                    f.vmstate._assign(item, item_data, f.vmstate.version)
                    items.append(item)
                _set(obj, f.attr, items)
            elif f.kind == "buffer":
                current = _get(obj, f.attr)
                if isinstance(current, bytearray):
                    try:
                        current[:] = value
                    except BufferError:  # exported views pin its size: replace it
                        _set(obj, f.attr, bytearray(value))
                else:
                    _set(obj, f.attr, bytes(value))
            elif f.kind == "array":
                current = _get(obj, f.attr)
                if isinstance(current, _array):
                    current[:] = _array(current.typecode, value)
                elif isinstance(current, list) and len(current) == len(value):
                    current[:] = value
                else:
                    _set(obj, f.attr, list(value))
            else:
                _set(obj, f.attr, value)

    # --- binary form ---------------------------------------------------------

    def encode(self, data: dict[str, Any]) -> bytes:
        """Encode plain data of the current version (as :meth:`save` returns it)."""
        self._validate(data, self.version)
        name = self.name.encode()
        out = bytearray([len(name)])
        out += name
        out += _U32.pack(self.version)
        self._encode_fields(out, data, self.version)
        return bytes(out)

    def _encode_fields(self, out: bytearray, data: dict[str, Any], version: int) -> None:
        for f in self.fields_of(version):
            value = data[f.attr]
            if f.kind in _INTS:
                out += _struct.pack(_INTS[f.kind][0], value)
            elif f.kind == "bool":
                out.append(1 if value else 0)
            elif f.kind == "buffer":
                if f.length is None:
                    out += _U32.pack(len(value))
                out += value
            elif f.kind == "array":
                out += _array(_ARRAY_CODES[f.element], value).tobytes()
            elif f.kind == "struct":
                f.vmstate._encode_fields(out, value, f.vmstate.version)
            else:  # struct_list
                out += _U32.pack(len(value))
                for item in value:
                    f.vmstate._encode_fields(out, item, f.vmstate.version)

    def decode(self, blob: bytes | bytearray | memoryview) -> tuple[dict[str, Any], int]:
        """Decode :meth:`encode` output (possibly of an older version): (data, version)."""
        reader = _Reader(self.name, memoryview(blob).cast("B"))
        name = reader.take(reader.take(1)[0]).tobytes()
        if name != self.name.encode():
            raise StreamError(
                f"{self.name}: state belongs to {name.decode(errors='replace')!r}, "
                "not to this device"
            )
        version = reader.u32()
        self.check_version(version)
        data = self._decode_fields(reader, version)
        if reader.remaining:
            raise StreamError(f"{self.name}: {reader.remaining} unexpected bytes after the state")
        return data, version

    def _decode_fields(self, reader: _Reader, version: int) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in self.fields_of(version):
            if f.kind in _INTS:
                fmt = _INTS[f.kind][0]
                data[f.attr] = _struct.unpack(fmt, reader.take(_struct.calcsize(fmt)))[0]
            elif f.kind == "bool":
                byte = reader.take(1)[0]
                if byte > 1:
                    raise StreamError(f"{self.name}: field {f.attr}: bad boolean {byte}")
                data[f.attr] = bool(byte)
            elif f.kind == "buffer":
                size = f.length if f.length is not None else reader.u32()
                data[f.attr] = reader.take(size).tobytes()
            elif f.kind == "array":
                items = _array(_ARRAY_CODES[f.element])
                items.frombytes(reader.take(f.length * items.itemsize))
                data[f.attr] = items.tolist()
            elif f.kind == "struct":
                data[f.attr] = f.vmstate._decode_fields(reader, f.vmstate.version)
            else:
                count = reader.u32()
                if count > reader.remaining:  # every element takes at least a byte
                    raise StreamError(f"{self.name}: field {f.attr}: {count} elements is absurd")
                data[f.attr] = [
                    f.vmstate._decode_fields(reader, f.vmstate.version) for _ in range(count)
                ]
        return data


def copy_states(
    owner: str, targets: Sequence[Any], loaded: Sequence[Any], vmstate: VMState
) -> None:
    """Copy every field of ``vmstate`` from ``loaded[i]`` to ``targets[i]``.

    ``struct_list`` fields load into fresh objects made by their factory; a device
    whose list elements are wired to the machine (a virtqueue knows guest memory,
    a timer channel its index) exposes the list through a property whose setter
    copies the loaded values into the existing objects with this function.
    """
    if len(loaded) != len(targets):
        raise StreamError(
            f"{owner}: state has {len(loaded)} {vmstate.name} entries, "
            f"this device has {len(targets)}"
        )
    for target, state in zip(targets, loaded, strict=True):
        for f in vmstate.fields:
            setattr(target, f.attr, getattr(state, f.attr))


def _check_value(owner: str, f: Field, value: Any) -> None:
    def bad(why: str) -> StreamError:
        return StreamError(f"{owner}: field {f.attr}: {why}")

    if f.kind in _INTS:
        _fmt, low, high = _INTS[f.kind]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(f"{value!r} is not a {f.kind}")
    elif f.kind == "bool":
        if not isinstance(value, bool):
            raise bad(f"{value!r} is not a boolean")
    elif f.kind == "buffer":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise bad("not bytes")
        if f.length is not None and len(value) != f.length:
            raise bad(f"{len(value)} bytes where {f.length} are expected")
    elif f.kind == "array":
        if not isinstance(value, list | tuple | _array) or len(value) != f.length:
            raise bad(f"expected a list of {f.length} {f.element}")
        _fmt, low, high = _INTS[f.element]
        if not all(isinstance(v, int) and low <= v <= high for v in value):
            raise bad(f"an element is not a {f.element}")
    elif f.kind == "struct":
        f.vmstate._validate(value, f.vmstate.version)
    else:
        if not isinstance(value, list | tuple):
            raise bad("not a list")
        for item in value:
            f.vmstate._validate(item, f.vmstate.version)


class _Reader:
    """Bounds-checked cursor over an encoded state."""

    def __init__(self, owner: str, view: memoryview) -> None:
        self.owner = owner
        self.view = view
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.view) - self.pos

    def take(self, size: int) -> memoryview:
        if size > self.remaining:
            raise StreamError(f"{self.owner}: state truncated ({self.remaining} of {size} bytes)")
        chunk = self.view[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]
