"""Differential testing against unicorn-engine (QEMU's TCG) on random instruction sequences.

Each case is a seeded random sequence of integer instructions over all operand
sizes and forms (registers, immediates, memory through EBX, the stack, strings,
conditional jumps). Both CPUs start from the same registers and memory; after
the sequence the registers, the arithmetic flags (minus those the last writer
leaves undefined) and the data and stack areas must be equal.
"""

from __future__ import annotations

import random

import pytest
import unicorn
from i386_guest import CODE, Guest, assemble
from unicorn import x86_const as ux

DATA = 0x40000  # EBX points here; never written by the generated code
STACK = 0x80000
FREE = ("eax", "ecx", "edx", "esi", "edi")
R16 = {"eax": "ax", "ecx": "cx", "edx": "dx", "esi": "si", "edi": "di", "ebx": "bx"}
R8 = {"eax": "al", "ecx": "cl", "edx": "dl", "ebx": "bl"}
R8H = {"eax": "ah", "ecx": "ch", "edx": "dh", "ebx": "bh"}
CC = "o no b ae e ne be a s ns p np l ge le g".split()
ALL_FLAGS = 0x8D5
#: Kinds of generated code that may read the flags (adc/sbb, rcl/rcr, setcc, cmov, jcc,
#: lahf, cmc, pushf, inc/dec keep CF, flag operations keep the others).
FLAG_READERS = frozenset("alu rot setcc cmov jcc conv flagop stack unary call".split())
_UC_REGS = {
    "eax": ux.UC_X86_REG_EAX,
    "ecx": ux.UC_X86_REG_ECX,
    "edx": ux.UC_X86_REG_EDX,
    "ebx": ux.UC_X86_REG_EBX,
    "esp": ux.UC_X86_REG_ESP,
    "ebp": ux.UC_X86_REG_EBP,
    "esi": ux.UC_X86_REG_ESI,
    "edi": ux.UC_X86_REG_EDI,
}
NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


class Gen:
    """Random instruction text; ``undef`` tracks flags the last writer leaves undefined."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.undef = 0
        self.label = 0

    def reg(self, size: int, dst: bool = True) -> str:
        rng = self.rng
        if size == 4:
            return rng.choice(FREE if dst else FREE + ("ebx", "esp", "ebp"))
        if size == 2:
            return R16[rng.choice(FREE)]
        return rng.choice(
            [R8[r] for r in ("eax", "ecx", "edx")] + [R8H[r] for r in ("eax", "ecx", "edx")]
        )

    def imm(self, size: int) -> int:
        rng = self.rng
        special = [
            0,
            1,
            2,
            0x7F,
            0x80,
            0xFF,
            0x7FFF,
            0x8000,
            0xFFFF,
            0x7FFFFFFF,
            0x80000000,
            0xFFFFFFFF,
        ]
        v = rng.choice(special) if rng.random() < 0.4 else rng.getrandbits(32)
        return v & ((1 << (size * 8)) - 1)

    def mem(self, size: int) -> str:
        ptr = {1: "byte", 2: "word", 4: "dword"}[size]
        return f"{ptr} ptr [ebx + {self.rng.randrange(0, 256, 1)}]"

    def operand(self, size: int) -> str:
        return self.reg(size) if self.rng.random() < 0.7 else self.mem(size)

    def insn(self) -> str:
        kind = self.rng.choice(
            "alu alu alu alu unary shift shift rot shd mul mul2 div bt bsf setcc cmov movx "
            "xchg xadd cmpxchg bswap lea conv flagop jcc stack string mov loop call frame "
            "btmem xlat cx8".split()
        )
        if self.undef and kind in FLAG_READERS:
            # an instruction reading flags the last writer left undefined would compare
            # two equally valid choices (and unicorn's CMPXCHG8B loses the flags): define
            # them first
            self.undef = 0
            return "cmp eax, ecx\n" + self._insn(kind)
        return self._insn(kind)

    def _insn(self, kind: str) -> str:
        rng = self.rng
        size = rng.choice((1, 2, 4, 4))
        if kind == "alu":
            op = rng.choice("add adc sub sbb and or xor cmp test".split())
            self.undef = 0x10 if op in ("and", "or", "xor", "test") else 0
            form = rng.randrange(4)
            if form == 0:
                return f"{op} {self.operand(size)}, {self.reg(size, False)}"
            if form == 1 and op != "test":
                return f"{op} {self.reg(size)}, {self.mem(size)}"
            if form == 2 and size > 1:
                return f"{op} {self.operand(size)}, {self.imm(1) & 0x7F}"
            return f"{op} {self.operand(size)}, {self.imm(size)}"
        if kind == "unary":
            op = rng.choice("inc dec neg not".split())
            if op != "not":
                self.undef = 0
            return f"{op} {self.operand(size)}"
        if kind == "shift":
            op = rng.choice("shl shr sar sal".split())
            count = rng.choice((0, 1, 1, 2, 7, 8, 15, 16, 31, 32, 33, rng.randrange(64)))
            src = "cl" if rng.random() < 0.3 else str(count)
            if src == "cl":
                return f"mov cl, {count}\n{op} {self.operand(size)}, cl"
            return f"{op} {self.operand(size)}, {count}"
        if kind == "rot":
            op = rng.choice("rol ror rcl rcr".split())
            count = rng.choice((0, 1, 2, 7, 8, 9, 16, 17, 31, 32, rng.randrange(64)))
            if op in ("rol", "ror"):
                self.undef |= 0x800
            else:
                self.undef |= 0x800
            return f"mov cl, {count}\n{op} {self.operand(size)}, cl"
        if kind == "shd":
            size = rng.choice((2, 4))
            op = rng.choice(("shld", "shrd"))
            count = rng.choice((0, 1, 2, 7, 8, 15, 16, 31, rng.randrange(32)))
            if size == 2 and count > 16:
                count = 15
            self.undef = 0x810
            return f"{op} {self.operand(size)}, {self.reg(size, False)}, {count}"
        if kind == "mul":
            op = rng.choice(("mul", "imul"))
            self.undef = 0xD4
            return f"{op} {self.operand(size)}"
        if kind == "mul2":
            size = rng.choice((2, 4))
            self.undef = 0xD4
            if rng.random() < 0.5:
                return f"imul {self.reg(size)}, {self.operand(size)}"
            return f"imul {self.reg(size)}, {self.operand(size)}, {self.imm(size)}"
        if kind == "div":
            self.undef = ALL_FLAGS
            size = rng.choice((1, 2, 4))
            op = rng.choice(("div", "idiv"))
            if size == 1:
                return (
                    f"mov ah, 0\nmov cl, {self.imm(1) | 1}\n{op} cl"
                    if op == "div"
                    else (f"movsx ax, al\nmov cl, {self.imm(1) | 1}\n{op} cl")
                )
            r, d = ("ax", "dx") if size == 2 else ("eax", "edx")
            c = "cx" if size == 2 else "ecx"
            setup = f"xor {d}, {d}" if op == "div" else ("cwd" if size == 2 else "cdq")
            return f"{setup}\nmov {c}, {self.imm(size) | 1}\n{op} {c}"
        if kind == "bt":
            size = rng.choice((2, 4))
            op = rng.choice("bt bts btr btc".split())
            self.undef = 0x8D4
            if rng.random() < 0.5:
                return f"{op} {self.operand(size)}, {rng.randrange(128)}"
            return f"{op} {self.reg(size)}, {self.reg(size, False)}"
        if kind == "bsf":
            size = rng.choice((2, 4))
            self.undef = 0x8D5 & ~0x40
            return f"{rng.choice(('bsf', 'bsr'))} {self.reg(size)}, {self.operand(size)}"
        if kind == "setcc":
            return f"set{rng.choice(CC)} {self.operand(1)}"
        if kind == "cmov":
            size = rng.choice((2, 4))
            return f"cmov{rng.choice(CC)} {self.reg(size)}, {self.operand(size)}"
        if kind == "movx":
            size = rng.choice((2, 4))
            src = rng.choice((1, 2)) if size == 4 else 1
            return f"{rng.choice(('movzx', 'movsx'))} {self.reg(size)}, {self.operand(src)}"
        if kind == "xchg":
            return f"xchg {self.operand(size)}, {self.reg(size)}"
        if kind == "xadd":
            self.undef = 0
            return f"xadd {self.operand(size)}, {self.reg(size)}"
        if kind == "cmpxchg":
            self.undef = 0
            return f"cmpxchg {self.operand(size)}, {self.reg(size)}"
        if kind == "bswap":
            return f"bswap {self.reg(4)}"
        if kind == "lea":
            size = rng.choice((2, 4))
            scale = rng.choice((1, 2, 4, 8))
            base, index = self.reg(4, False), self.reg(4, False)
            return f"lea {self.reg(size)}, [{base} + {index}*{scale} + {self.imm(4) & 0xFFFF}]"
        if kind == "conv":
            return rng.choice(("cbw", "cwde", "cwd", "cdq", "lahf", "sahf"))
        if kind == "flagop":
            return rng.choice(("clc", "stc", "cmc"))
        if kind == "jcc":
            self.label += 1
            label = f"skip{self.label}"
            body = self.insn()
            return f"j{rng.choice(CC)} {label}\n{body}\n{label}:"
        if kind == "stack":
            choice = rng.randrange(4)
            if choice == 0:
                return f"push {self.reg(4, False)}\npop {self.reg(4)}"
            if choice == 1:
                return f"push {self.imm(4)}\npop {self.operand(4)}"
            if choice == 2:
                return f"pushfd\npop {self.reg(4)}"
            return f"push {self.reg(2, False)}\npop {self.reg(2)}"
        if kind == "string":
            op = rng.choice("movs stos lods cmps scas".split())
            suffix = {1: "b", 2: "w", 4: "d"}[size]
            rep = (
                rng.choice(("", "rep ", "repe ", "repne "))
                if op in ("cmps", "scas")
                else rng.choice(("", "rep "))
            )
            count = rng.randrange(0, 6)
            d = rng.choice(("cld", "std"))
            setup = (
                f"{d}\nlea esi, [ebx + {rng.randrange(32, 96)}]"
                f"\nlea edi, [ebx + {rng.randrange(96, 160)}]\nmov ecx, {count}"
            )
            if op in ("cmps", "scas"):
                self.undef = 0
            text = f"{rep}{op}{suffix}"
            if op == "movs" and size == 4:  # keystone reads "movsd" as the SSE2 instruction
                text = f"{rep}movs dword ptr es:[edi], dword ptr [esi]"
            return f"{setup}\n{text}\ncld"
        if kind == "btmem":  # bit offsets reaching outside the addressed dword, both ways
            op = rng.choice("bt bts btr btc".split())
            size = rng.choice((2, 4))
            self.undef = 0x8D4
            offset = rng.randrange(-480, 480)
            reg = "ecx" if size == 4 else "cx"
            ptr = "dword" if size == 4 else "word"
            target = f"{ptr} ptr [ebx + {rng.randrange(64, 192)}]"
            return f"mov ecx, {offset & 0xFFFFFFFF}\n{op} {target}, {reg}"
        if kind == "xlat":
            return f"mov eax, {self.imm(4)}\nxlatb"
        if kind == "cx8":
            self.undef = 0x895
            return f"lock cmpxchg8b qword ptr [ebx + {rng.randrange(0, 248)}]"
        if kind == "loop":
            self.label += 1
            label = f"loop{self.label}"
            op = rng.choice(("loop", "dec ecx\njnz", "sub ecx, 1\njne"))
            self.undef = 0
            return (
                f"mov ecx, {rng.randrange(1, 40)}\n{label}:\nadd eax, ecx\nrol edx, 3\n"
                f"xor esi, eax\n{op} {label}"
            )
        if kind == "call":
            self.label += 1
            label = f"fn{self.label}"
            body = self.insn()
            return f"call {label}\njmp {label}_end\n{label}:\n{body}\nret\n{label}_end:"
        if kind == "frame":
            return rng.choice(
                (
                    "push ebp\nmov ebp, esp\npush 7\nmov esp, ebp\npop ebp",
                    f"enter {rng.randrange(0, 64)}, 0\nleave",
                    f"enter {rng.randrange(0, 64)}, {rng.randrange(1, 4)}\nleave",
                    "pushad\nmov eax, 1\nnot esi\npopad",
                    "pushaw\npopaw",
                )
            )
        return f"mov {self.operand(size)}, {self.imm(size)}"


def _unicorn_run(code: bytes, regs: dict[str, int], memory: bytes) -> tuple[dict, int, bytes]:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.mem_write(0, memory)
    uc.mem_write(CODE, code)
    for name, value in regs.items():
        uc.reg_write(_UC_REGS[name], value)
    uc.reg_write(ux.UC_X86_REG_EFLAGS, 2)
    uc.emu_start(CODE, CODE + len(code), count=100_000)
    out = {name: uc.reg_read(_UC_REGS[name]) for name in NAMES}
    return out, uc.reg_read(ux.UC_X86_REG_EFLAGS), bytes(uc.mem_read(0, 1 << 20))


def _case(seed: int, length: int = 24) -> tuple[str, dict[str, int], bytes, int]:
    rng = random.Random(seed)
    gen = Gen(rng)
    lines = [gen.insn() for _ in range(length)]
    regs = {name: rng.getrandbits(32) for name in FREE}
    regs.update(ebx=DATA, esp=STACK, ebp=STACK + 0x100)
    memory = bytearray(1 << 20)
    memory[DATA : DATA + 0x200] = rng.randbytes(0x200)
    return "\n".join(lines), regs, bytes(memory), gen.undef


PAGE_DIRECTORY = 0xF0000


def _identity_paging(guest: Guest) -> None:
    """Paging on, the first 4 MiB identity-mapped through 4 KiB pages (page tables at
    0xF1000) so every access takes the TLB path; the tables sit outside the compared areas."""
    ram = guest.machine.ram
    ram.write(PAGE_DIRECTORY, (0xF1000 | 3).to_bytes(4, "little"))
    ram.write(0xF1000, b"".join(((p << 12) | 3).to_bytes(4, "little") for p in range(1024)))
    guest.cpu.h_write_cr(3, PAGE_DIRECTORY)
    guest.cpu.h_write_cr(0, guest.cpu.cr[0] | 0x80000000)


SEGMENT_BASE = 0x100000


def _segmented(guest: Guest, memory: bytes) -> None:
    """Data, stack and string segments based at SEGMENT_BASE, holding the data image there
    (code stays at CS base 0): every access adds a segment base."""
    guest.machine.ram.write(SEGMENT_BASE, memory)
    for seg in (0, 2, 3, 4, 5):  # ES SS DS FS GS
        guest.cpu.set_segment(seg, 0x10, SEGMENT_BASE, 0xFFFFFFFF, 0xCF9300)


@pytest.mark.parametrize(
    ("seed", "layout"),
    [(s, "flat") for s in range(400)]
    + [(s, "paging") for s in range(400, 500)]
    + [(s, "segmented") for s in range(500, 560)],
)
def test_random_sequence_matches_unicorn(seed: int, layout: str) -> None:
    source, regs, memory, undef = _case(seed)
    code = assemble(source)
    expected, uc_flags, uc_mem = _unicorn_run(code, regs, memory)

    guest = Guest(ram_size=2 << 20)
    guest.machine.ram.write(0, memory)
    guest.machine.ram.write(CODE, code + b"\xf4")
    base = 0
    if layout == "paging":
        _identity_paging(guest)
    elif layout == "segmented":
        _segmented(guest, memory)
        base = SEGMENT_BASE
    for name, value in regs.items():
        guest.cpu.r[NAMES.index(name)] = value
    guest.cpu.eip = CODE
    guest.cpu.run(100_000)
    assert guest.cpu.halted and guest.cpu.eip == CODE + len(code) + 1, source
    got = {name: guest.cpu.r[i] for i, name in enumerate(NAMES)}
    assert got == expected, source
    mask = ALL_FLAGS & ~undef
    assert guest.cpu.get_eflags() & mask == uc_flags & mask, source
    ram = guest.machine.ram.data
    data, stack = base + DATA, base + STACK
    assert ram[data : data + 0x200] == uc_mem[DATA : DATA + 0x200], source
    assert ram[stack - 0x100 : stack] == uc_mem[STACK - 0x100 : STACK], source
