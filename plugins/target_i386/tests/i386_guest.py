"""A small machine (RAM, address space, port space) and keystone-assembled guest snippets."""

from __future__ import annotations

import keystone
from arctern_target_i386.cpu import I386CPU

from arctern.machine.memory import RAM, AddressSpace, IOSpace

CODE = 0x1000
STACK = 0x80000
IDT = 0x500
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

    def install_idt(self) -> None:
        """Every vector 0..31 gets an interrupt gate to a stub: mov [0x600], vector; hlt."""
        ram = self.machine.ram
        for v in range(32):
            handler = HANDLERS + 16 * v
            gate = (0x10 << 16) | (handler & 0xFFFF), (handler & 0xFFFF0000) | 0x8E00
            ram.write(IDT + 8 * v, gate[0].to_bytes(4, "little") + gate[1].to_bytes(4, "little"))
            ram.write(handler, assemble(f"mov dword ptr [0x600], {v}; hlt", handler))
        ram.write(0x600, (0xFFFFFFFF).to_bytes(4, "little"))
        self.cpu.idt = [IDT, 32 * 8 - 1]

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
        return self.mem(0x600)
