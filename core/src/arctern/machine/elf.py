"""A generic ELF loader for ``-kernel``: PT_LOAD segments into RAM, by physical address.

The loader knows nothing of boot protocols: a machine type decides how to
enter the image (Multiboot on microvm, a device tree on ARM virt). Every
field is checked against the file and RAM before anything is copied, so a
damaged or hostile file gets one clear error and no huge allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from arctern.errors import MachineError
from arctern.machine.memory import RAM

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
ET_EXEC = 2
PT_LOAD = 1
EM_386, EM_ARM, EM_X86_64, EM_AARCH64 = 3, 40, 62, 183

# (header layout after e_ident, program header layout) per class
_LAYOUT = {
    ELFCLASS32: (struct.Struct("<HHIIIIIHHHHHH"), struct.Struct("<IIIIIIII")),
    ELFCLASS64: (struct.Struct("<HHIQQQIHHHHHH"), struct.Struct("<IIQQQQQQ")),
}


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header: ``filesz`` bytes from ``offset``, zero-filled to ``memsz``."""

    paddr: int
    offset: int
    filesz: int
    memsz: int

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


@dataclass(frozen=True)
class ElfImage:
    """What a machine needs to enter a loaded image."""

    entry: int
    machine: int
    elf_class: int
    segments: tuple[Segment, ...]

    @property
    def low(self) -> int:
        return min(s.paddr for s in self.segments)

    @property
    def high(self) -> int:
        """First address past the highest loaded byte (including zero-filled bss)."""
        return max(s.end for s in self.segments)


def is_elf(data: bytes | memoryview) -> bool:
    return bytes(data[:4]) == ELF_MAGIC


def parse_elf(data: bytes | memoryview, *, name: str = "kernel") -> ElfImage:
    """Check an executable ELF's headers against the file; raise MachineError naming ``name``."""
    view = memoryview(data)
    if len(view) < 16 or not is_elf(view):
        raise MachineError(f"{name}: not an ELF file")
    elf_class, encoding = view[4], view[5]
    if elf_class not in _LAYOUT:
        raise MachineError(f"{name}: unknown ELF class {elf_class}")
    if encoding != ELFDATA2LSB:
        raise MachineError(f"{name}: big-endian ELF files are not supported")
    header, phdr = _LAYOUT[elf_class]
    if len(view) < 16 + header.size:
        raise MachineError(f"{name}: truncated ELF header")
    (e_type, e_machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize,
     e_phnum, *_rest) = header.unpack_from(view, 16)  # fmt: skip
    if e_type != ET_EXEC:
        raise MachineError(f"{name}: not an executable ELF file (type {e_type})")
    if e_phnum == 0:
        raise MachineError(f"{name}: the ELF file has no program headers")
    if e_phentsize < phdr.size or e_phoff + e_phnum * e_phentsize > len(view):
        raise MachineError(f"{name}: program headers lie outside the file")
    segments = []
    for i in range(e_phnum):
        fields = phdr.unpack_from(view, e_phoff + i * e_phentsize)
        if elf_class == ELFCLASS32:
            p_type, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _pflags, _align = fields
        else:
            p_type, _pflags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _align = fields
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz:
            raise MachineError(f"{name}: segment {i} has more file bytes than memory bytes")
        if p_offset + p_filesz > len(view):
            raise MachineError(f"{name}: segment {i} lies outside the file (truncated?)")
        segments.append(Segment(p_paddr, p_offset, p_filesz, p_memsz))
    if not segments:
        raise MachineError(f"{name}: the ELF file has nothing to load")
    return ElfImage(e_entry, e_machine, elf_class, tuple(segments))


def load_elf(
    ram: RAM, data: bytes | memoryview, *, machine: int | None = None, name: str = "kernel"
) -> ElfImage:
    """Copy the PT_LOAD segments of ``data`` into ``ram`` at their physical addresses.

    ``machine`` (an EM_* value) refuses images for another architecture.
    """
    image = parse_elf(data, name=name)
    if machine is not None and image.machine != machine:
        raise MachineError(
            f"{name}: ELF image is for machine {image.machine}, this target needs {machine}"
        )
    for seg in image.segments:
        if seg.paddr < ram.base or seg.end > ram.end:
            raise MachineError(
                f"{name}: segment at {seg.paddr:#x}-{seg.end:#x} does not fit in RAM "
                f"({ram.base:#x}-{ram.end:#x}); give the machine more memory with -m"
            )
    view = memoryview(data)
    for seg in image.segments:
        ram.write(seg.paddr, view[seg.offset : seg.offset + seg.filesz])
        if seg.memsz > seg.filesz:
            ram.write(seg.paddr + seg.filesz, bytes(seg.memsz - seg.filesz))
    return image
