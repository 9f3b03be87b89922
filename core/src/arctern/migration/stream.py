"""The migration stream: a versioned header, checksummed sections, an end marker.

Layout (all integers little-endian)::

    header   "ARCTMIG\\0"  u32 version
    section  u8 type  u8 name-length  u32 payload-length  u32 crc32(name + payload)
             name  payload
    ...
    END      (a section of type END whose payload is the u32 number of sections before it)

Section types and their payloads:

* ``GLOBAL``: plain data (:func:`encode_plain`): the source's run state, RAM size;
* ``RAM``: runs of pages, each ``u32 first-page  u32 count  u8 kind``, followed by
  ``count`` pages of data for kind DATA and by nothing for kind ZERO (zero
  pages travel as a flag);
* ``CPU``: plain data, the CPU's ``get_state()``; the name is ``cpu<index>``;
* ``DEVICE``: a device's ``vmstate.encode()`` bytes; the name identifies the device;
* ``CLOCK``, ``BLOCK``: plain data (virtual clock, the drives' names and sizes);
* ``VERIFY``: the source's digest of RAM, CPU and device state (the ``verify`` capability).

A reader trusts nothing: lengths are bounded before anything is allocated, each
section's checksum is checked before its payload is used, page runs must lie
within RAM, and every failure is one :class:`~arctern.errors.StreamError` line.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from arctern.errors import MigrationError, StreamError, TransportError
from arctern.machine.memory import PAGE_SHIFT, PAGE_SIZE, RAM
from arctern.migration.transport import MigrationStream

MAGIC = b"ARCTMIG\0"
VERSION = 1
HEADER = struct.Struct("<8sI")
SECTION = struct.Struct("<BBII")
RUN = struct.Struct("<IIB")
COUNT = struct.Struct("<I")

GLOBAL, RAM_PAGES, CPU, DEVICE, CLOCK, BLOCK, VERIFY, END = 1, 2, 3, 4, 5, 6, 7, 0xFF
SECTION_NAMES = {
    GLOBAL: "global",
    RAM_PAGES: "ram",
    CPU: "cpu",
    DEVICE: "device",
    CLOCK: "clock",
    BLOCK: "block",
    VERIFY: "verify",
    END: "end",
}
RUN_DATA, RUN_ZERO = 0, 1

MAX_PAYLOAD = 64 << 20  # the largest section a reader accepts (RAM sections are ~1 MiB)
MAX_PLAIN = 16 << 20  # the largest plain-data section (CPU, clock, global state)

ZERO_PAGE = bytes(PAGE_SIZE)


# --- plain data ----------------------------------------------------------------


def encode_plain(value: Any) -> bytes:
    """JSON for the dicts of get_state(); bytes become ``{"$b": base64}``."""

    def default(obj: Any) -> Any:
        if isinstance(obj, bytes | bytearray | memoryview):
            return {"$b": base64.b64encode(bytes(obj)).decode()}
        if isinstance(obj, tuple | set | frozenset):
            return list(obj)
        raise TypeError(f"{type(obj).__name__} is not plain data")

    try:
        return json.dumps(value, default=default, separators=(",", ":"), sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise MigrationError(f"state cannot be migrated: {exc}") from None


def decode_plain(data: bytes | memoryview, what: str) -> Any:
    def hook(obj: dict) -> Any:
        if len(obj) == 1 and "$b" in obj:
            return base64.b64decode(obj["$b"], validate=True)
        return obj

    try:
        return json.loads(bytes(data), object_hook=hook)
    except (ValueError, RecursionError, TypeError) as exc:
        raise StreamError(f"migration stream: {what} state is corrupt ({exc})") from None


# --- writing -----------------------------------------------------------------


def header() -> bytes:
    return HEADER.pack(MAGIC, VERSION)


def section(kind: int, name: str, *payload: bytes | bytearray | memoryview) -> list:
    """The framed pieces of one section (header, name, payload parts), ready to send."""
    raw_name = name.encode()
    if len(raw_name) > 255:
        raise StreamError(f"section name too long: {name[:40]}...")
    length = sum(len(part) for part in payload)
    crc = zlib.crc32(raw_name)
    for part in payload:
        crc = zlib.crc32(part, crc)
    return [SECTION.pack(kind, len(raw_name), length, crc), raw_name, *payload]


def end_section(sections_before: int) -> list:
    return section(END, "end", COUNT.pack(sections_before))


class RamEncoder:
    """Turns runs of dirty pages into RAM sections of at most ``chunk_pages`` pages.

    Pages are copied into the section at encoding time (the guest may write
    them a moment later); a page that is all zeroes is sent as a flag. Counters feed
    query-migrate: ``duplicate`` (zero pages), ``normal`` pages and bytes.
    """

    def __init__(self, ram: RAM, chunk_pages: int = 256) -> None:
        self.ram = ram
        self.chunk_pages = chunk_pages
        self._zeroes = bytes(chunk_pages << PAGE_SHIFT)
        self.duplicate = 0
        self.normal = 0

    def encode(self, first: int, count: int) -> list[bytes]:
        """Sections carrying pages [first, first + count), each copied into one bytes object.

        Framing and copying happen here, on the main loop, in one pass: a
        worker thread that had to take the GIL back for each checksum and
        each buffer would wait behind the running guest every time.
        """
        return [
            b"".join(
                section(
                    RAM_PAGES,
                    "ram",
                    *self._runs(start, min(self.chunk_pages, first + count - start)),
                )
            )
            for start in range(first, first + count, self.chunk_pages)
        ]

    def _runs(self, first: int, count: int) -> list:
        view = self.ram.view
        base = first << PAGE_SHIFT
        length = count << PAGE_SHIFT
        # bytearray.startswith compares with memcmp and copies nothing; comparing
        # memoryviews would go byte by byte in Python's generic buffer code.
        data = self.ram.data
        zeroes = self._zeroes if length == len(self._zeroes) else bytes(length)
        if data.startswith(zeroes, base, base + length):
            self.duplicate += count
            return [RUN.pack(first, count, RUN_ZERO)]
        parts: list = []
        run_start, run_zero = first, None
        for page in range(first, first + count + 1):
            if page < first + count:
                off = page << PAGE_SHIFT
                zero = data.startswith(ZERO_PAGE, off, off + PAGE_SIZE)
                if zero == run_zero:
                    continue
            if run_zero is not None:
                n = page - run_start
                if run_zero:
                    self.duplicate += n
                    parts.append(RUN.pack(run_start, n, RUN_ZERO))
                else:
                    self.normal += n
                    off = run_start << PAGE_SHIFT
                    parts.append(RUN.pack(run_start, n, RUN_DATA))
                    parts.append(view[off : off + (n << PAGE_SHIFT)])
            if page < first + count:
                run_start, run_zero = page, zero
        return parts


# --- reading -----------------------------------------------------------------


@dataclass
class Section:
    kind: int
    name: str
    payload: memoryview

    @property
    def label(self) -> str:
        kind = SECTION_NAMES.get(self.kind, str(self.kind))
        return kind if self.name == kind else f"{kind} '{self.name}'"


class StreamReader:
    """Reads and checks sections from a MigrationStream; every problem is a StreamError."""

    def __init__(self, stream: MigrationStream, source: str) -> None:
        self.stream = stream
        self.source = source
        self.count = 0
        self.bytes_read = 0

    def _read(self, size: int, where: str) -> bytearray:
        data = bytearray(size)
        try:
            got = self.stream.read_exact_into(memoryview(data))
        except TransportError as exc:
            raise StreamError(f"migration stream from {self.source} broke {where}: {exc}") from None
        self.bytes_read += got
        if got < size:
            raise StreamError(f"migration stream from {self.source} is truncated {where}")
        return data

    def read_header(self) -> None:
        magic, version = HEADER.unpack(self._read(HEADER.size, "in its header"))
        if magic != MAGIC:
            raise StreamError(f"{self.source} is not an Arctern migration stream (bad magic)")
        if version != VERSION:
            raise StreamError(
                f"migration stream from {self.source} has version {version}; "
                f"this Arctern reads version {VERSION}"
            )

    def sections(self) -> Iterator[Section]:
        """Every section up to and including END (checked against the section count)."""
        while True:
            where = f"after section {self.count}"
            kind, name_len, length, crc = SECTION.unpack(self._read(SECTION.size, where))
            if kind not in SECTION_NAMES:
                raise StreamError(
                    f"migration stream from {self.source}: unknown section type {kind} {where}"
                )
            if length > MAX_PAYLOAD:
                raise StreamError(
                    f"migration stream from {self.source}: section of {length} bytes {where} "
                    f"exceeds the {MAX_PAYLOAD} byte limit"
                )
            body = self._read(name_len + length, f"in section {self.count + 1}")
            if zlib.crc32(body) != crc:
                raise StreamError(
                    f"migration stream from {self.source}: section {self.count + 1} "
                    f"({SECTION_NAMES[kind]}) fails its checksum"
                )
            try:
                name = body[:name_len].decode()
            except UnicodeDecodeError:
                raise StreamError(
                    f"migration stream from {self.source}: bad section name"
                ) from None
            sec = Section(kind, name, memoryview(body)[name_len:])
            if kind == END:
                if len(sec.payload) != COUNT.size or COUNT.unpack(sec.payload)[0] != self.count:
                    raise StreamError(
                        f"migration stream from {self.source}: end marker does not match "
                        f"the {self.count} sections received"
                    )
                yield sec
                return
            self.count += 1
            yield sec


def load_ram_section(ram: RAM, payload: memoryview, source: str) -> int:
    """Copy the page runs of one RAM section into ``ram``; returns the pages loaded."""
    pages_total = ram.size >> PAGE_SHIFT
    pos, end, loaded = 0, len(payload), 0
    data = ram.data
    while pos < end:
        if end - pos < RUN.size:
            raise StreamError(f"migration stream from {source}: RAM section ends mid-record")
        first, count, kind = RUN.unpack_from(payload, pos)
        pos += RUN.size
        if count == 0 or first + count > pages_total or kind not in (RUN_DATA, RUN_ZERO):
            raise StreamError(
                f"migration stream from {source}: RAM run of {count} pages at page {first} "
                f"does not fit the {pages_total} pages of RAM"
            )
        start, size = first << PAGE_SHIFT, count << PAGE_SHIFT
        if kind == RUN_ZERO:
            data[start : start + size] = bytes(size)
        else:
            if end - pos < size:
                raise StreamError(f"migration stream from {source}: RAM section ends mid-page")
            data[start : start + size] = payload[pos : pos + size]
            pos += size
        loaded += count
    return loaded
