"""A small machine (RAM, address space, port space) and keystone-assembled guest snippets."""

from __future__ import annotations

import keystone
from arctern_target_i386.cpu import I386CPU

from arctern.machine.memory import RAM, AddressSpace, IOSpace

CODE = 0x1000
STACK = 0x80000
IDT = 0x500  # 64 gates, up to the GDT
VECTOR_SLOT = 0x4F0  # where the IDT stubs record the vector taken
GDT = 0x700
#: null, flat code (0x08), flat data (0x10): the selectors enter_flat_protected_mode uses.
GDT_ENTRIES = [0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, 0]
HANDLERS = 0x2000  # handler for vector v at HANDLERS + 16 * v


class TestMachine:
    """Just what the CPU touches: RAM, address space, I/O ports, exit_request."""

    __test__ = False

    def __init__(self, ram_size: int = 1 << 20) -> None:
        self.ram = RAM(ram_size)
        self.address_space = AddressSpace(self.ram)
        self.io = IOSpace()
        self.exit_request = False


_ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_32)


def assemble(source: str, addr: int = CODE) -> bytes:
    encoding, _count = _ks.asm(source, addr)
    return bytes(encoding)


class Guest:
    """A CPU with flat segments, a stack, and an IDT whose handlers record the vector."""

    __test__ = False

    def __init__(self, ram_size: int = 1 << 20) -> None:
        self.machine = TestMachine(ram_size)
        self.cpu = I386CPU(self.machine)
        self.cpu.enter_flat_protected_mode(CODE, 0, 0)
        self.cpu.r[4] = STACK

    def set_gdt(self, extra: list[int] = ()) -> None:
        """Install the flat GDT plus ``extra`` descriptors from selector 0x20 on."""
        entries = GDT_ENTRIES + list(extra)
        self.machine.ram.write(GDT, b"".join(d.to_bytes(8, "little") for d in entries))
        self.cpu.gdt = [GDT, 8 * len(entries) - 1]

    def install_idt(self) -> None:
        """A GDT, and for every vector 0..31 an interrupt gate to: record the vector; hlt."""
        self.set_gdt()
        ram = self.machine.ram
        for v in range(32):
            handler = HANDLERS + 16 * v
            gate = (0x08 << 16) | (handler & 0xFFFF), (handler & 0xFFFF0000) | 0x8E00
            ram.write(IDT + 8 * v, gate[0].to_bytes(4, "little") + gate[1].to_bytes(4, "little"))
            ram.write(handler, assemble(f"mov dword ptr [{VECTOR_SLOT}], {v}; hlt", handler))
        self.clear_vector()
        self.cpu.idt = [IDT, 64 * 8 - 1]

    def clear_vector(self) -> None:
        self.machine.ram.write(VECTOR_SLOT, (0xFFFFFFFF).to_bytes(4, "little"))

    def load(self, source: str, addr: int = CODE) -> bytes:
        code = assemble(source, addr)
        self.machine.ram.write(addr, code)
        return code

    def run(self, source: str, budget: int = 100_000, **regs: int) -> I386CPU:
        """Assemble ``source`` + hlt at CODE, set registers, run until HLT."""
        self.load(source + "\nhlt")
        cpu = self.cpu
        names = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
        for name, value in regs.items():
            if name == "eflags":
                cpu.set_eflags(value)
            else:
                cpu.r[names.index(name)] = value & 0xFFFFFFFF
        cpu.eip = CODE
        cpu.halted = False
        cpu.run(budget)
        assert cpu.halted, f"guest did not reach hlt (eip={cpu.eip:#x})"
        return cpu

    def reg(self, name: str) -> int:
        names = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
        return self.cpu.r[names.index(name)]

    def mem(self, addr: int, size: int = 4) -> int:
        return int.from_bytes(self.machine.ram.read(addr, size), "little")

    @property
    def vector(self) -> int:
        """The vector recorded by the IDT stubs (0xffffffff: none taken)."""
        return self.mem(VECTOR_SLOT)
