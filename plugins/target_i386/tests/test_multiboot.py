"""Multiboot v1 loading: what a kernel finds in memory and registers, as QEMU 7.2 leaves it."""

from __future__ import annotations

import struct

import pytest
from arctern_target_i386.multiboot import (
    BOOTLOADER_MAGIC,
    HEADER_MAGIC,
    INFO_ADDR,
    MMAP_ADDR,
    find_header,
    load_multiboot,
)

from arctern.errors import MachineError
from arctern.machine.memory import RAM

RAM_SIZE = 8 << 20


def header(flags: int = 3, *fields: int) -> bytes:
    return struct.pack(
        "<III", HEADER_MAGIC, flags, -(HEADER_MAGIC + flags) & 0xFFFFFFFF
    ) + b"".join(struct.pack("<I", f) for f in fields)


def elf(segments: list[tuple[int, bytes, int]], entry: int, machine: int = 3) -> bytes:
    """A minimal ELF32 executable: (paddr, file bytes, memsz) per PT_LOAD segment."""
    phoff = 52
    data_at = phoff + 32 * len(segments)
    phdrs, blobs = b"", b""
    for paddr, data, memsz in segments:
        phdrs += struct.pack("<8I", 1, data_at + len(blobs), paddr, paddr, len(data), memsz, 7, 4)
        blobs += data
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    head = ident + struct.pack(
        "<HHIIIIIHHHHHH", 2, machine, 1, entry, phoff, 0, 0, 52, 32, len(segments), 40, 0, 0
    )
    return head + phdrs + blobs


def info_fields(ram: RAM) -> dict[str, int]:
    names = "flags mem_lower mem_upper boot_device cmdline mods_count mods_addr".split()
    values = struct.unpack_from("<7I", ram.data, INFO_ADDR)
    fields = dict(zip(names, values, strict=True))
    fields["mmap_length"], fields["mmap_addr"] = struct.unpack_from("<II", ram.data, INFO_ADDR + 44)
    fields["loader"] = struct.unpack_from("<I", ram.data, INFO_ADDR + 64)[0]
    return fields


def cstring(ram: RAM, addr: int) -> bytes:
    return bytes(ram.data[addr : ram.data.index(0, addr)])


def test_elf_kernel_is_loaded_and_described_as_qemu_does():
    code = header() + b"\x90" * 20
    image = elf([(0x100000, code, 0x3000), (0x104000, b"data", 0x10)], entry=0x10000C)
    ram = RAM(RAM_SIZE)
    ram.data[0x100000 + len(code)] = 0xAA  # bss must come back zeroed
    assert load_multiboot(ram, image, "/boot/k.elf", "console=ttyS0") == 0x10000C
    assert ram.read(0x100000, len(code)) == code and ram.read(0x100000 + len(code), 4) == bytes(4)
    assert ram.read(0x104000, 4) == b"data"
    info = info_fields(ram)
    assert info["flags"] == 0x24F
    assert (info["mem_lower"], info["mem_upper"]) == (639, (RAM_SIZE >> 10) - 1024)
    assert info["boot_device"] == 0x8000FFFF
    assert info["cmdline"] == 0x105000 == info["mods_addr"] and info["mods_count"] == 0
    assert cstring(ram, info["cmdline"]) == b"/boot/k.elf console=ttyS0"
    assert info["loader"] == info["cmdline"] + len(b"/boot/k.elf console=ttyS0") + 1
    assert cstring(ram, info["loader"]) == b"qemu"
    assert (info["mmap_addr"], info["mmap_length"]) == (MMAP_ADDR, 6 * 24)
    entries = [struct.unpack_from("<IQQI", ram.data, MMAP_ADDR + 24 * i) for i in range(6)]
    assert entries == [
        (20, 0, 0x9FC00, 1),
        (20, 0x9FC00, 0x400, 2),
        (20, 0xD0000, 0x20000, 4),
        (20, 0xF0000, 0x10000, 2),
        (20, 0x100000, RAM_SIZE - 0x100000, 1),
        (20, 0, 0, 0),
    ]


def test_address_fields_load_a_flat_binary():
    load_addr = 0x200000
    blob = bytearray(0x100)
    blob[8:] = bytes(len(blob) - 8)
    fields = header(0x10003, load_addr + 8, load_addr, 0, load_addr + 0x1000, load_addr + 0x40)
    image = bytes(8) + fields + b"\xf4" * (0x100 - 8 - len(fields))
    ram = RAM(RAM_SIZE)
    ram.data[load_addr + 0x800] = 0x55
    assert load_multiboot(ram, image, "flat.bin", "") == load_addr + 0x40
    assert ram.read(load_addr, len(image)) == image
    assert ram.data[load_addr + 0x800] == 0  # bss zeroed up to bss_end_addr
    assert cstring(ram, info_fields(ram)["cmdline"]) == b"flat.bin "


def test_header_must_be_aligned_checksummed_and_within_8_kib():
    assert find_header(bytes(4) + header()).offset == 4
    assert find_header(bytes(2) + header()) is None  # unaligned
    assert find_header(bytes(8192) + header()) is None  # too far
    bad = bytearray(header())
    bad[8] ^= 1
    assert find_header(bytes(bad)) is None


@pytest.mark.parametrize(
    "image, message",
    [
        (b"just text", "invalid kernel header"),
        (header() + bytes(64), "not an ELF file"),
        (elf([(0x100000, header(), 16)], 0x100000, machine=62), "x86-64"),
        (elf([(0x100000, header(), 16)], 0x100000, machine=40), "ELF image is for machine 40"),
        (elf([(RAM_SIZE - 8, header(), 64)], 0), "does not fit in RAM"),
        (header(0x10003, 0x100000, 0x100000, 0x200000, 0, 0x100000), "outside the file"),
        (header(0x10003, 0x100000), "address fields truncated"),
    ],
)
def test_bad_kernels_get_one_clear_error(image, message):
    with pytest.raises(MachineError, match=message):
        load_multiboot(RAM(RAM_SIZE), image, "k", "")


def test_entry_state_is_flat_protected_mode_with_the_magic(tmp_path):
    from arctern.machine import Machine, MemoryChardev

    kernel = tmp_path / "k.elf"
    kernel.write_bytes(elf([(0x100000, header() + b"\xf4", 16)], entry=0x10000C))
    machine = Machine("microvm")
    machine.add_serial(MemoryChardev())
    machine.build()
    machine.power_on(kernel=str(kernel), cmdline="x")
    cpu = machine.cpus[0]
    assert (cpu.eip, cpu.r[0], cpu.r[3]) == (0x10000C, BOOTLOADER_MAGIC, INFO_ADDR)
    assert cpu.cr[0] & 1 and not cpu.cr[0] >> 31 and not cpu.eflags & 0x200
    machine.reset()  # system_reset reloads the kernel and re-enters it
    assert (cpu.eip, cpu.r[0]) == (0x10000C, BOOTLOADER_MAGIC)


def test_modules_follow_the_strings_page_aligned():
    from arctern_target_i386.multiboot import Module

    image = elf([(0x100000, header(), 0x1000)], entry=0x100000)
    ram = RAM(RAM_SIZE)
    modules = [Module("a.bin x", b"AAAA"), Module("b,c.bin", b"B" * 5000)]
    load_multiboot(ram, image, "k", "cmd", modules, initrd="a.bin x,b,,c.bin")
    info = info_fields(ram)
    assert (info["mods_count"], info["mods_addr"]) == (2, 0x101000)
    listed = [struct.unpack_from("<4I", ram.data, 0x101000 + 16 * i) for i in range(2)]
    assert listed == [
        (0x102000, 0x102004, 0x101020, 0),
        (0x103000, 0x103000 + 5000, 0x101028, 0),
    ]
    assert cstring(ram, 0x101020) == b"a.bin x" and cstring(ram, 0x101028) == b"b,c.bin"
    assert info["cmdline"] == 0x101030 and cstring(ram, info["cmdline"]) == b"k cmd"
    # QEMU sizes the strings from the -initrd text as typed: one byte more for ",,".
    assert info["loader"] == 0x101020 + len("a.bin x,b,,c.bin") + 1 + len("k cmd") + 1
    assert ram.read(0x102000, 4) == b"AAAA" and ram.read(0x103000, 5000) == b"B" * 5000


def test_undecodable_bytes_of_names_and_command_lines_reach_the_guest_unchanged():
    image = elf([(0x100000, header(), 16)], entry=0x100000)
    ram = RAM(RAM_SIZE)
    path, cmdline = b"k\xff.elf".decode(errors="surrogateescape"), "a\udcfeb"  # as argv gives them
    load_multiboot(ram, image, path, cmdline)
    assert cstring(ram, info_fields(ram)["cmdline"]) == b"k\xff.elf a\xfeb"
