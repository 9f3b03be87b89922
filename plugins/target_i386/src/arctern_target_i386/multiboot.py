"""Multiboot v1 loading as QEMU 7.2 does it for ``-kernel`` on x86 machines.

What a kernel can observe is reproduced exactly (tests compare it with
qemu-system-i386): the information block at 0x9500 with flags 0x24f, the
E820 memory map at 0x9000 (six 24-byte entries, the last one all zero, as
the BIOS call behind QEMU's loader returns them), the command line
``"KERNEL-PATH APPEND"`` and the boot loader name ``"qemu"`` placed on the
first page boundary after the kernel, and the entry state EAX = 0x2BADB002,
EBX = 0x9500.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from arctern.errors import MachineError
from arctern.machine.elf import EM_386, EM_X86_64, is_elf, load_elf, parse_elf
from arctern.machine.memory import RAM

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH_LIMIT = 8192
INFO_ADDR = 0x9500
MMAP_ADDR = 0x9000
LOADER_NAME = b"qemu"

FLAG_AOUT_KLUDGE = 1 << 16
INFO_MEMORY, INFO_BOOTDEV, INFO_CMDLINE, INFO_MODS = 1 << 0, 1 << 1, 1 << 2, 1 << 3
INFO_MEM_MAP, INFO_LOADER_NAME = 1 << 6, 1 << 9
INFO_FLAGS = INFO_MEMORY | INFO_BOOTDEV | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_LOADER_NAME
BOOT_DEVICE = 0x8000FFFF  # first BIOS disk, no partition

E820_RAM, E820_RESERVED, E820_NVS = 1, 2, 4
LOW_RAM_END = 0x9FC00  # 639 KiB of conventional memory, then the EBDA
HIGH_RAM_START = 0x100000

_HEADER = struct.Struct("<III")
_AOUT = struct.Struct("<IIIII")
_MMAP_ENTRY = struct.Struct("<IQQI")
_INFO = struct.Struct("<IIIIIII16xIIII4xI")
_MODULE = struct.Struct("<IIII")  # mod_start, mod_end, string, reserved
INFO_SIZE = 88


@dataclass(frozen=True)
class MultibootHeader:
    offset: int  # in the file
    flags: int
    header_addr: int = 0
    load_addr: int = 0
    load_end_addr: int = 0
    bss_end_addr: int = 0
    entry_addr: int = 0


def find_header(data: bytes | memoryview) -> MultibootHeader | None:
    """The Multiboot header: 4-byte aligned within the first 8 KiB, with a valid checksum."""
    head = bytes(data[:SEARCH_LIMIT])
    needle = HEADER_MAGIC.to_bytes(4, "little")
    pos = head.find(needle)
    while pos >= 0:
        if pos % 4 == 0 and pos + _HEADER.size <= len(head):
            magic, flags, checksum = _HEADER.unpack_from(head, pos)
            if (magic + flags + checksum) & 0xFFFFFFFF == 0:
                if flags & FLAG_AOUT_KLUDGE:
                    if pos + _HEADER.size + _AOUT.size > len(data):
                        raise MachineError("invalid multiboot header: address fields truncated")
                    fields = _AOUT.unpack_from(data, pos + _HEADER.size)
                    return MultibootHeader(pos, flags, *fields)
                return MultibootHeader(pos, flags)
        pos = head.find(needle, pos + 1)
    return None


def memory_map(ram_size: int) -> list[tuple[int, int, int]]:
    """(address, length, type) of the E820 map a microvm/PC guest sees, terminator included."""
    return [
        (0, LOW_RAM_END, E820_RAM),
        (LOW_RAM_END, 0x400, E820_RESERVED),
        (0xD0000, 0x20000, E820_NVS),
        (0xF0000, 0x10000, E820_RESERVED),
        (HIGH_RAM_START, ram_size - HIGH_RAM_START, E820_RAM),
        (0, 0, 0),
    ]


@dataclass(frozen=True)
class Module:
    """A boot module (``-initrd "FILE ARGS,..."``): its command line and contents."""

    cmdline: str
    data: bytes | memoryview


def load_multiboot(
    ram: RAM,
    data: bytes,
    path: str,
    cmdline: str,
    modules: Sequence[Module] = (),
    initrd: str = "",
) -> int:
    """Load a Multiboot kernel, its modules and the information block; return the entry EIP.

    QEMU's layout: on the first page after the kernel the module list (16 bytes
    a module), then the modules' command lines and the kernel's, then the loader
    name, each module on the next page boundary after that. QEMU sizes the
    command-line area from ``initrd`` as typed (``-initrd``, ``,,`` escapes
    included), so the loader name moves one byte further per escaped comma.
    """
    entry, kernel_end = _load_image(ram, data, path)
    info_at = _page_align(kernel_end)
    command_at, loader_at = _load_strings_and_modules(
        ram, info_at, path, cmdline, modules, len(initrd) + 1 if modules else 0
    )
    entries = memory_map(ram.size)
    ram.write(MMAP_ADDR, b"".join(_MMAP_ENTRY.pack(20, a, n, t) for a, n, t in entries))
    info = _INFO.pack(
        INFO_FLAGS,
        LOW_RAM_END >> 10,
        (ram.size - HIGH_RAM_START) >> 10,
        BOOT_DEVICE,
        command_at,
        len(modules),
        info_at,  # mods_addr
        len(entries) * _MMAP_ENTRY.size,
        MMAP_ADDR,
        0,  # drives_length
        0,  # drives_addr
        loader_at,
    )
    ram.write(INFO_ADDR, info.ljust(INFO_SIZE, b"\0"))
    return entry


def _load_image(ram: RAM, data: bytes, path: str) -> tuple[int, int]:
    """Load the kernel (ELF, or by the header's address fields); (entry, end of the image)."""
    header = find_header(data)
    if header is None:
        raise MachineError("invalid kernel header")
    if ram.base != 0 or ram.size <= HIGH_RAM_START:
        raise MachineError("Multiboot needs RAM from address 0 and above 1 MiB")
    if header.flags & FLAG_AOUT_KLUDGE:
        return _load_aout(ram, data, header)
    if not is_elf(data):
        raise MachineError("invalid multiboot header: no address fields and not an ELF file")
    if parse_elf(data, name=path).machine == EM_X86_64:
        raise MachineError("Cannot load x86-64 image, give a 32bit one.")
    image = load_elf(ram, data, machine=EM_386, name=path)
    return image.entry, image.high


def _load_strings_and_modules(
    ram: RAM,
    info_at: int,
    path: str,
    cmdline: str,
    modules: Sequence[Module],
    modules_text_size: int,
) -> tuple[int, int]:
    """The module list, the command lines and the loader name, then the modules.

    Returns the addresses of the kernel's command line and of the loader name.
    """
    strings_at = info_at + _MODULE.size * len(modules)
    strings = bytearray()
    string_at = []
    for text in [*(m.cmdline for m in modules), f"{path} {cmdline}"]:
        string_at.append(strings_at + len(strings))
        strings += _c_string(text)
    command = _c_string(f"{path} {cmdline}")[:-1]
    loader_at = strings_at + modules_text_size + len(command) + 1
    strings += bytes(loader_at - strings_at - len(strings)) + LOADER_NAME + b"\0"
    starts = []
    load_at = _page_align(strings_at + len(strings))
    for module in modules:
        starts.append(load_at)
        load_at = _page_align(load_at + len(module.data))
    if load_at > ram.end:
        raise MachineError("the kernel command line and modules do not fit in RAM")
    module_list = b"".join(
        _MODULE.pack(start, start + len(m.data), text_at, 0)
        for start, m, text_at in zip(starts, modules, string_at, strict=False)
    )
    ram.write(info_at, module_list + strings)
    for start, module in zip(starts, modules, strict=True):
        ram.write(start, module.data)
    return string_at[-1], loader_at


def _c_string(text: str) -> bytes:
    """NUL-terminated bytes; undecodable bytes of a file name or argv come back unchanged."""
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _page_align(addr: int) -> int:
    return (addr + 0xFFF) & ~0xFFF


def _load_aout(ram: RAM, data: bytes, header: MultibootHeader) -> tuple[int, int]:
    """The address fields: load [load_addr, load_end_addr) from the file, zero to bss_end_addr."""
    file_start = header.offset - (header.header_addr - header.load_addr)
    load_end = header.load_end_addr or header.load_addr + len(data) - file_start
    size = load_end - header.load_addr
    if file_start < 0 or size < 0 or file_start + size > len(data):
        raise MachineError("invalid multiboot header: load addresses outside the file")
    bss_end = max(header.bss_end_addr, load_end)
    if header.load_addr < HIGH_RAM_START or bss_end > ram.end:
        raise MachineError(
            f"kernel at {header.load_addr:#x}-{bss_end:#x} does not fit in RAM "
            f"(1 MiB-{ram.end:#x}); give the machine more memory with -m"
        )
    ram.write(header.load_addr, memoryview(data)[file_start : file_start + size])
    if bss_end > load_end:
        ram.write(load_end, bytes(bss_end - load_end))
    return header.entry_addr, bss_end
