"""The stream format: round trips, zero pages as flags, and hostile input as one StreamError."""

from __future__ import annotations

import io
import os
import random
import struct

import pytest

from arctern.errors import StreamError
from arctern.machine.memory import PAGE_SIZE, RAM
from arctern.migration import stream as fmt
from arctern.migration.transport import MigrationStream


class BytesStream(MigrationStream):
    """A MigrationStream over bytes in memory, read in small pieces to exercise read_exact."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self.buffer = io.BytesIO(data)
        self.piece = piece

    def read(self, size: int) -> bytes:
        return self.buffer.read(min(size, self.piece))


def _ram_with_content() -> RAM:
    ram = RAM(64 * PAGE_SIZE)
    ram.data[3 * PAGE_SIZE : 5 * PAGE_SIZE] = os.urandom(2 * PAGE_SIZE)
    ram.data[40 * PAGE_SIZE + 7] = 0xAA
    return ram


def _stream_of(ram: RAM, chunk_pages: int = 16) -> tuple[bytes, fmt.RamEncoder]:
    encoder = fmt.RamEncoder(ram, chunk_pages=chunk_pages)
    pieces = [fmt.header()]
    pieces += fmt.section(fmt.GLOBAL, "global", fmt.encode_plain({"ram-size": ram.size}))
    pieces += encoder.encode(0, ram.size // PAGE_SIZE)
    pieces += fmt.section(fmt.CPU, "cpu0", fmt.encode_plain({"eip": 5, "fpu": b"\x01\x02"}))
    return b"".join(bytes(p) for p in pieces), encoder


def _finish(data: bytes, count: int) -> bytes:
    return data + b"".join(bytes(p) for p in fmt.end_section(count))


def _load(data: bytes, ram: RAM) -> list[fmt.Section]:
    reader = fmt.StreamReader(BytesStream(data), "test")
    reader.read_header()
    seen = []
    for sec in reader.sections():
        if sec.kind == fmt.RAM_PAGES:
            fmt.load_ram_section(ram, sec.payload, "test")
        seen.append(sec)
    return seen


def test_round_trip_restores_ram_and_plain_state():
    source = _ram_with_content()
    body, encoder = _stream_of(source)
    data = _finish(body, 1 + 4 + 1)  # global, 4 RAM sections of 16 pages, cpu0
    target = RAM(source.size)
    target.data[:] = os.urandom(source.size)  # stale content must be overwritten, zeroes too
    sections = _load(data, target)
    assert target.data == source.data
    cpu = [s for s in sections if s.kind == fmt.CPU][0]
    assert fmt.decode_plain(cpu.payload, "cpu0") == {"eip": 5, "fpu": b"\x01\x02"}
    assert sections[-1].kind == fmt.END
    # 3 data pages (two random, one with one byte set), the rest travel as flags
    assert (encoder.normal, encoder.duplicate) == (3, 61)


def test_zero_pages_do_not_travel_as_data():
    ram = RAM(1024 * PAGE_SIZE)
    body, _ = _stream_of(ram, chunk_pages=256)
    assert len(body) < 400


def test_wrong_magic_and_version():
    with pytest.raises(StreamError, match="not an Arctern migration stream"):
        _load(b"QEVM" + bytes(20), RAM(PAGE_SIZE))
    with pytest.raises(StreamError, match="has version 9"):
        _load(struct.pack("<8sI", fmt.MAGIC, 9), RAM(PAGE_SIZE))


def test_end_marker_must_count_the_sections():
    body, _ = _stream_of(_ram_with_content())
    with pytest.raises(StreamError, match="end marker does not match"):
        _load(_finish(body, 3), RAM(64 * PAGE_SIZE))


def test_missing_end_marker_is_truncation():
    body, _ = _stream_of(_ram_with_content())
    with pytest.raises(StreamError, match="truncated after section 6"):
        _load(body, RAM(64 * PAGE_SIZE))


def test_run_outside_ram_is_refused():
    payload = fmt.RUN.pack(60, 10, fmt.RUN_ZERO)
    data = _finish(fmt.header() + b"".join(fmt.section(fmt.RAM_PAGES, "ram", payload)), 1)
    with pytest.raises(StreamError, match="does not fit the 64 pages"):
        _load(data, RAM(64 * PAGE_SIZE))


def test_oversized_section_is_refused_before_allocation():
    data = fmt.header() + fmt.SECTION.pack(fmt.RAM_PAGES, 3, 0xFFFFFFF0, 0) + b"ram"
    with pytest.raises(StreamError, match="exceeds the"):
        _load(data, RAM(PAGE_SIZE))


def test_corrupt_plain_state():
    with pytest.raises(StreamError, match="cpu0 state is corrupt"):
        fmt.decode_plain(b"[" * 100000, "cpu0")


def test_fuzzed_streams_give_one_stream_error_or_load():
    """Flip, cut and splice bytes of a real stream: only StreamError may come out."""
    source = _ram_with_content()
    body, _ = _stream_of(source)
    good = _finish(body, 6)
    rng = random.Random(1234)
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(400):
        data = bytearray(good)
        mutation = rng.randrange(3)
        if mutation == 0:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif mutation == 1:
            del data[rng.randrange(len(data)) :]
        else:
            at = rng.randrange(len(data))
            data[at:at] = os.urandom(rng.randrange(1, 64))
        try:
            _load(bytes(data), RAM(source.size))
            outcomes["loaded"] += 1
        except StreamError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] >= 390
