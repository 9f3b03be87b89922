"""The generic ELF loader: PT_LOAD segments by physical address, every field checked first."""

from __future__ import annotations

import struct

import pytest

from arctern.errors import MachineError
from arctern.machine.elf import EM_386, EM_AARCH64, load_elf, parse_elf
from arctern.machine.memory import RAM

PT_LOAD, PT_NOTE = 1, 4


def make_elf(segments, entry, *, machine=EM_386, wide=False, e_type=2) -> bytes:
    """An executable ELF: segments are (type, paddr, file bytes, memsz)."""
    ehsize, phsize = (64, 56) if wide else (52, 32)
    data_at = ehsize + phsize * len(segments)
    phdrs, blobs = b"", b""
    for p_type, paddr, data, memsz in segments:
        offset = data_at + len(blobs)
        if wide:
            phdrs += struct.pack("<IIQQQQQQ", p_type, 7, offset, paddr, paddr, len(data), memsz, 8)
        else:
            phdrs += struct.pack("<8I", p_type, offset, paddr, paddr, len(data), memsz, 7, 4)
        blobs += data
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1, 1]) + bytes(9)
    layout = "<HHIQQQIHHHHHH" if wide else "<HHIIIIIHHHHHH"
    header = struct.pack(
        layout, e_type, machine, 1, entry, ehsize, 0, 0, ehsize, phsize, len(segments), 0, 0, 0
    )
    return ident + header + phdrs + blobs


def test_segments_land_at_their_physical_addresses_with_zeroed_bss():
    ram = RAM(1 << 20, base=0x40000000)
    ram.data[0x2004:0x2010] = b"\xff" * 12
    ram.dirty[:] = bytes(len(ram.dirty))
    image = load_elf(
        ram,
        make_elf(
            [
                (PT_LOAD, 0x40001000, b"code", 4),
                (PT_NOTE, 0x40005000, b"note", 4),  # not loaded
                (PT_LOAD, 0x40002000, b"data", 0x10),
            ],
            entry=0x40001000,
        ),
        machine=EM_386,
    )
    assert (image.entry, image.low, image.high) == (0x40001000, 0x40001000, 0x40002010)
    assert ram.read(0x40001000, 4) == b"code" and ram.read(0x40005000, 4) == bytes(4)
    assert ram.read(0x40002000, 16) == b"data" + bytes(12)
    assert ram.dirty[1] == ram.dirty[2] == 1  # migration sees what the loader wrote


def test_elf64_images_load_too():
    ram = RAM(1 << 20)
    data = make_elf(
        [(PT_LOAD, 0x8000, b"\x1f\x20\x03\xd5", 4)], 0x8000, machine=EM_AARCH64, wide=True
    )
    image = load_elf(ram, data, machine=EM_AARCH64)
    assert image.elf_class == 2 and ram.read(0x8000, 4) == b"\x1f\x20\x03\xd5"


GOOD = make_elf([(PT_LOAD, 0x1000, b"x" * 16, 32)], 0x1000)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not an ELF file"),
        (b"MZ" + bytes(100), "not an ELF file"),
        (GOOD[:4] + b"\x03" + GOOD[5:], "unknown ELF class 3"),
        (GOOD[:5] + b"\x02" + GOOD[6:], "big-endian"),
        (GOOD[:30], "truncated ELF header"),
        (make_elf([(PT_LOAD, 0x1000, b"x", 1)], 0, e_type=3), "not an executable"),
        (make_elf([], 0), "no program headers"),
        (GOOD[:60], "program headers lie outside the file"),
        (GOOD[:-4], "segment 0 lies outside the file"),
        (make_elf([(PT_LOAD, 0x1000, b"xx", 1)], 0), "more file bytes than memory bytes"),
        (make_elf([(PT_NOTE, 0x1000, b"x", 1)], 0), "nothing to load"),
        (make_elf([(PT_LOAD, 0xFFFF0, b"x", 0x20)], 0), "does not fit in RAM"),
        (make_elf([(PT_LOAD, 0xFFFFFFF0, b"", 0xFFFFFFFF)], 0), "does not fit in RAM"),
        (make_elf([(PT_LOAD, 0x1000, b"x", 1)], 0, machine=EM_AARCH64), "for machine 183"),
    ],
)
def test_damaged_or_foreign_images_get_one_error_and_load_nothing(data, message):
    ram = RAM(1 << 20)
    with pytest.raises(MachineError, match=message):
        load_elf(ram, data, machine=EM_386, name="k.elf")
    assert not any(ram.data)


def test_hostile_program_header_count_is_checked_against_the_file():
    data = bytearray(GOOD)
    struct.pack_into("<H", data, 44, 0xFFFF)  # e_phnum
    with pytest.raises(MachineError, match="outside the file"):
        parse_elf(bytes(data))
