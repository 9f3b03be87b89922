"""Decoding i386 machine code into :class:`Insn` records, once per translation.

The decoder knows the encodings (prefixes, ModRM/SIB in 16- and 32-bit
addressing, immediates); the code generator knows the semantics. Anything the
CPU does not implement decodes to ``op == "ud"`` so that the guest sees #UD,
never a Python error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ES, CS, SS, DS, FS, GS = range(6)
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
REG_NAMES = {
    4: ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"),
    2: ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di"),
    1: ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"),
}
MAX_INSN_LENGTH = 15


class NeedBytes(Exception):  # noqa: N818 - internal signal
    """The instruction continues past the bytes that could be fetched."""


@dataclass(frozen=True, slots=True)
class Reg:
    n: int
    size: int


@dataclass(frozen=True, slots=True)
class Mem:
    seg: int
    base: int | None
    index: int | None
    scale: int
    disp: int
    asize: int
    size: int


@dataclass(frozen=True, slots=True)
class Imm:
    value: int
    size: int


@dataclass(frozen=True, slots=True)
class SReg:
    n: int


@dataclass(frozen=True, slots=True)
class Ctl:
    """A control (``kind == "cr"``) or debug (``"dr"``) register."""

    kind: str
    n: int


Operand = Reg | Mem | Imm | SReg | Ctl


@dataclass(slots=True)
class Insn:
    addr: int
    length: int
    op: str
    size: int = 4
    ops: tuple = field(default_factory=tuple)
    cc: int = 0
    rep: str = ""
    lock: bool = False
    asize: int = 4
    seg: int | None = None  # explicit segment override
    target: int | None = None  # branch target (offset in CS)
    far: tuple[int, int] | None = None  # (selector, offset) of a direct far jump/call
    code: bytes = b""

    @property
    def next(self) -> int:
        return (self.addr + self.length) & 0xFFFFFFFF


ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
SHIFTS = ("rol", "ror", "rcl", "rcr", "shl", "shr", "shl", "sar")
GRP3 = ("test", "test", "not", "neg", "mul", "imul1", "div", "idiv")
LOCKABLE = frozenset(
    "add adc and btc btr bts cmpxchg cmpxchg8b dec inc neg not or sbb sub xor xadd xchg".split()
)
# 16-bit addressing: (base, index) per rm value
_RM16 = ((3, 6), (3, 7), (5, 6), (5, 7), (6, None), (7, None), (5, None), (3, None))


class _Reader:
    __slots__ = ("buf", "pos", "start", "osize", "asize", "seg")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.start = pos
        self.osize = 4
        self.asize = 4
        self.seg: int | None = None

    def u8(self) -> int:
        pos = self.pos
        if pos >= len(self.buf):
            raise NeedBytes
        self.pos = pos + 1
        return self.buf[pos]

    def uint(self, size: int) -> int:
        pos = self.pos
        if pos + size > len(self.buf):
            raise NeedBytes
        self.pos = pos + size
        return int.from_bytes(self.buf[pos : pos + size], "little")

    def sint(self, size: int) -> int:
        v = self.uint(size)
        sign = 1 << (size * 8 - 1)
        return (v ^ sign) - sign

    def imm(self, size: int) -> Imm:
        return Imm(self.uint(size), size)

    def simm8(self, size: int) -> Imm:
        """An 8-bit immediate sign-extended to ``size`` bytes."""
        return Imm(self.sint(1) & ((1 << (size * 8)) - 1), size)

    def modrm(self, size: int) -> tuple[int, Reg | Mem]:
        """Decode ModRM (+SIB, displacement); return (reg field, r/m operand of ``size``)."""
        b = self.u8()
        mod, reg, rm = b >> 6, (b >> 3) & 7, b & 7
        if mod == 3:
            return reg, Reg(rm, size)
        return reg, self._mem(mod, rm, size)

    def _mem(self, mod: int, rm: int, size: int) -> Mem:
        seg = DS
        if self.asize == 2:
            base, index = _RM16[rm]
            if mod == 0 and rm == 6:
                base, disp = None, self.uint(2)
            else:
                disp = self.sint(1) if mod == 1 else self.uint(2) if mod == 2 else 0
            if base == 5:
                seg = SS
            return Mem(self.seg if self.seg is not None else seg, base, index, 1, disp, 2, size)
        base: int | None = rm
        index = None
        scale = 1
        if rm == 4:
            sib = self.u8()
            scale = 1 << (sib >> 6)
            index = (sib >> 3) & 7
            if index == 4:
                index = None
            base = sib & 7
            if base == 5 and mod == 0:
                base = None
                disp = self.sint(4)
        if base == 5 and mod == 0 and rm == 5:
            base = None
        if mod == 0:
            if base is None and rm != 4:
                disp = self.sint(4)
            elif base is not None:
                disp = 0
        elif mod == 1:
            disp = self.sint(1)
        else:
            disp = self.sint(4)
        if base in (4, 5):
            seg = SS
        seg = self.seg if self.seg is not None else seg
        return Mem(seg, base, index, scale, disp & 0xFFFFFFFF, 4, size)

    def rel(self, size: int) -> int:
        return self.sint(size)


def decode(buf: bytes, pos: int, addr: int, code32: bool = True) -> Insn:
    """Decode the instruction at ``buf[pos:]``, which sits at offset ``addr`` in CS.

    Raises :class:`NeedBytes` when ``buf`` ends inside the instruction.
    """
    r = _Reader(buf, pos)
    if not code32:
        r.osize = r.asize = 2
    rep = ""
    lock = False
    while True:
        b = r.u8()
        if b == 0x66:
            r.osize = 6 - r.osize
        elif b == 0x67:
            r.asize = 6 - r.asize
        elif b == 0xF0:
            lock = True
        elif b == 0xF2:
            rep = "repne"
        elif b == 0xF3:
            rep = "rep"
        elif b in _SEG_PREFIX:
            r.seg = _SEG_PREFIX[b]
        else:
            break
        if r.pos - r.start >= MAX_INSN_LENGTH:
            return _finish(r, Insn(addr, r.pos - r.start, "toolong"), addr)
    try:
        insn = _ONE[b](r, b) if b != 0x0F else _two_byte(r)
    except _Invalid:
        insn = Insn(0, 0, "ud")
    insn.rep = rep
    if insn.op not in _STRING and insn.op != "nop":
        insn.rep = ""
    insn.lock = lock
    if lock and (insn.op not in LOCKABLE or not insn.ops or not isinstance(insn.ops[0], Mem)):
        insn = Insn(0, 0, "ud")
    insn = _finish(r, insn, addr)
    if insn.length > MAX_INSN_LENGTH:
        insn.op = "toolong"
    if insn.target is not None and insn.size == 2:
        insn.target &= 0xFFFF
    return insn


_SEG_PREFIX = {0x26: ES, 0x2E: CS, 0x36: SS, 0x3E: DS, 0x64: FS, 0x65: GS}
_STRING = frozenset(("movs", "cmps", "stos", "lods", "scas", "ins", "outs"))


class _Invalid(Exception):  # noqa: N818 - internal signal
    pass


def _finish(r: _Reader, insn: Insn, addr: int) -> Insn:
    insn.addr = addr
    insn.length = r.pos - r.start
    insn.asize = r.asize
    insn.seg = r.seg
    insn.code = bytes(r.buf[r.start : r.pos])
    if insn.target is not None:
        insn.target = (addr + insn.length + insn.target) & 0xFFFFFFFF
    return insn


def _ins(op: str, size: int, *ops, **kw) -> Insn:
    return Insn(0, 0, op, size, ops, **kw)


# --- one-byte opcodes -----------------------------------------------------------


def _alu(r: _Reader, b: int) -> Insn:
    op = ALU[b >> 3]
    form = b & 7
    if form == 0:
        reg, rm = r.modrm(1)
        return _ins(op, 1, rm, Reg(reg, 1))
    if form == 1:
        reg, rm = r.modrm(r.osize)
        return _ins(op, r.osize, rm, Reg(reg, r.osize))
    if form == 2:
        reg, rm = r.modrm(1)
        return _ins(op, 1, Reg(reg, 1), rm)
    if form == 3:
        reg, rm = r.modrm(r.osize)
        return _ins(op, r.osize, Reg(reg, r.osize), rm)
    if form == 4:
        return _ins(op, 1, Reg(0, 1), r.imm(1))
    return _ins(op, r.osize, Reg(0, r.osize), r.imm(r.osize))


def _seg_push_pop(r: _Reader, b: int) -> Insn:
    seg = {0x06: ES, 0x07: ES, 0x0E: CS, 0x16: SS, 0x17: SS, 0x1E: DS, 0x1F: DS}[b]
    return _ins("pop_sreg" if b & 1 else "push_sreg", r.osize, SReg(seg))


def _simple(op: str, sized: bool = False):
    def handler(r: _Reader, b: int) -> Insn:
        return _ins(op, r.osize if sized else 4)

    return handler


def _inc_dec_reg(r: _Reader, b: int) -> Insn:
    return _ins("dec" if b & 8 else "inc", r.osize, Reg(b & 7, r.osize))


def _push_pop_reg(r: _Reader, b: int) -> Insn:
    return _ins("pop" if b & 8 else "push", r.osize, Reg(b & 7, r.osize))


def _push_imm(r: _Reader, b: int) -> Insn:
    imm = r.imm(r.osize) if b == 0x68 else r.simm8(r.osize)
    return _ins("push", r.osize, imm)


def _imul3(r: _Reader, b: int) -> Insn:
    reg, rm = r.modrm(r.osize)
    imm = r.imm(r.osize) if b == 0x69 else r.simm8(r.osize)
    return _ins("imul", r.osize, Reg(reg, r.osize), rm, imm)


def _jcc8(r: _Reader, b: int) -> Insn:
    return _ins("jcc", r.osize, cc=b & 15, target=r.rel(1))


def _grp1(r: _Reader, b: int) -> Insn:
    size = 1 if b in (0x80, 0x82) else r.osize
    reg, rm = r.modrm(size)
    imm = r.imm(size) if b != 0x83 else r.simm8(size)
    return _ins(ALU[reg], size, rm, imm)


def _test_rm(r: _Reader, b: int) -> Insn:
    size = 1 if b == 0x84 else r.osize
    reg, rm = r.modrm(size)
    return _ins("test", size, rm, Reg(reg, size))


def _xchg_rm(r: _Reader, b: int) -> Insn:
    size = 1 if b == 0x86 else r.osize
    reg, rm = r.modrm(size)
    return _ins("xchg", size, rm, Reg(reg, size))


def _mov_rm(r: _Reader, b: int) -> Insn:
    size = 1 if b in (0x88, 0x8A) else r.osize
    reg, rm = r.modrm(size)
    if b in (0x88, 0x89):
        return _ins("mov", size, rm, Reg(reg, size))
    return _ins("mov", size, Reg(reg, size), rm)


def _mov_sreg(r: _Reader, b: int) -> Insn:
    if b == 0x8C:
        reg, rm = r.modrm(r.osize if isinstance(_peek_rm(r), int) else 2)
        if reg > 5:
            raise _Invalid
        return _ins("mov_from_sreg", rm.size, rm, SReg(reg))
    reg, rm = r.modrm(2)
    if reg > 5 or reg == CS:
        raise _Invalid
    return _ins("mov_sreg", 2, SReg(reg), rm)


def _peek_rm(r: _Reader) -> int | None:
    """The register number when the next ModRM names a register (mov from sreg zero-extends)."""
    if r.pos < len(r.buf) and r.buf[r.pos] >> 6 == 3:
        return r.buf[r.pos] & 7
    return None


def _lea(r: _Reader, b: int) -> Insn:
    reg, rm = r.modrm(r.osize)
    if isinstance(rm, Reg):
        raise _Invalid
    return _ins("lea", r.osize, Reg(reg, r.osize), rm)


def _pop_rm(r: _Reader, b: int) -> Insn:
    reg, rm = r.modrm(r.osize)
    if reg:
        raise _Invalid
    return _ins("pop", r.osize, rm)


def _nop90(r: _Reader, b: int) -> Insn:
    return _ins("nop", 4)


def _xchg_ax(r: _Reader, b: int) -> Insn:
    return _ins("xchg", r.osize, Reg(b & 7, r.osize), Reg(0, r.osize))


def _far_ptr(r: _Reader, b: int) -> Insn:
    off = r.uint(r.osize)
    sel = r.uint(2)
    return _ins("callf" if b == 0x9A else "jmpf", r.osize, far=(sel, off))


def _moffs(r: _Reader, b: int) -> Insn:
    size = 1 if b in (0xA0, 0xA2) else r.osize
    disp = r.uint(r.asize)
    seg = r.seg if r.seg is not None else DS
    mem = Mem(seg, None, None, 1, disp, r.asize, size)
    if b in (0xA0, 0xA1):
        return _ins("mov", size, Reg(0, size), mem)
    return _ins("mov", size, mem, Reg(0, size))


_STRING_OPS = {
    0xA4: "movs", 0xA6: "cmps", 0xAA: "stos", 0xAC: "lods", 0xAE: "scas", 0x6C: "ins", 0x6E: "outs",
}


def _string(r: _Reader, b: int) -> Insn:
    op = _STRING_OPS[b & 0xFE]
    return _ins(op, 1 if not b & 1 else r.osize)


def _test_acc(r: _Reader, b: int) -> Insn:
    size = 1 if b == 0xA8 else r.osize
    return _ins("test", size, Reg(0, size), r.imm(size))


def _mov_imm_reg(r: _Reader, b: int) -> Insn:
    size = 1 if b < 0xB8 else r.osize
    return _ins("mov", size, Reg(b & 7, size), r.imm(size))


def _grp2(r: _Reader, b: int) -> Insn:
    size = 1 if b in (0xC0, 0xD0, 0xD2) else r.osize
    reg, rm = r.modrm(size)
    if b in (0xC0, 0xC1):
        count: Reg | Imm = r.imm(1)
    elif b in (0xD0, 0xD1):
        count = Imm(1, 1)
    else:
        count = Reg(1, 1)
    return _ins(SHIFTS[reg], size, rm, count)


def _ret(r: _Reader, b: int) -> Insn:
    imm = r.uint(2) if b in (0xC2, 0xCA) else 0
    return _ins("ret" if b in (0xC2, 0xC3) else "retf", r.osize, Imm(imm, 2))


def _lseg(seg: int):
    def handler(r: _Reader, b: int) -> Insn:
        reg, rm = r.modrm(r.osize)
        if isinstance(rm, Reg):
            raise _Invalid
        return _ins("lseg", r.osize, SReg(seg), Reg(reg, r.osize), rm)

    return handler


def _mov_imm_rm(r: _Reader, b: int) -> Insn:
    size = 1 if b == 0xC6 else r.osize
    reg, rm = r.modrm(size)
    if reg:
        raise _Invalid
    return _ins("mov", size, rm, r.imm(size))


def _enter(r: _Reader, b: int) -> Insn:
    return _ins("enter", r.osize, Imm(r.uint(2), 2), Imm(r.uint(1), 1))


def _int(r: _Reader, b: int) -> Insn:
    return _ins("int", 4, Imm(r.uint(1), 1))


def _aam_aad(r: _Reader, b: int) -> Insn:
    return _ins("aam" if b == 0xD4 else "aad", 1, Imm(r.uint(1), 1))


def _fpu(r: _Reader, b: int) -> Insn:
    r.modrm(4)
    return _ins("fpu", 4)


def _loop(r: _Reader, b: int) -> Insn:
    op = ("loopne", "loope", "loop", "jecxz")[b - 0xE0]
    return _ins(op, r.osize, target=r.rel(1))


def _in_out(r: _Reader, b: int) -> Insn:
    size = 1 if not b & 1 else r.osize
    port: Imm | Reg = r.imm(1) if b < 0xEC else Reg(2, 2)
    if b & 2:
        return _ins("out", size, port, Reg(0, size))
    return _ins("in", size, Reg(0, size), port)


def _call_jmp_rel(r: _Reader, b: int) -> Insn:
    size = 1 if b == 0xEB else r.osize
    return _ins("call" if b == 0xE8 else "jmp", r.osize, target=r.rel(size))


def _grp3(r: _Reader, b: int) -> Insn:
    size = 1 if b == 0xF6 else r.osize
    reg, rm = r.modrm(size)
    op = GRP3[reg]
    if op == "test":
        return _ins(op, size, rm, r.imm(size))
    return _ins(op, size, rm)


def _grp4(r: _Reader, b: int) -> Insn:
    reg, rm = r.modrm(1)
    if reg > 1:
        raise _Invalid
    return _ins("dec" if reg else "inc", 1, rm)


def _grp5(r: _Reader, b: int) -> Insn:
    reg, rm = r.modrm(r.osize)
    if reg == 7:
        raise _Invalid
    if reg in (3, 5):
        if isinstance(rm, Reg):
            raise _Invalid
        return _ins("callf_ind" if reg == 3 else "jmpf_ind", r.osize, rm)
    op = ("inc", "dec", "call_ind", None, "jmp_ind", None, "push")[reg]
    return _ins(op, r.osize, rm)


def _invalid(r: _Reader, b: int) -> Insn:
    raise _Invalid


_ONE = [_invalid] * 256
for _b in range(0x40):
    if _b & 7 < 6:
        _ONE[_b] = _alu
for _b in (0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F):
    _ONE[_b] = _seg_push_pop
for _b, _op in ((0x27, "daa"), (0x2F, "das"), (0x37, "aaa"), (0x3F, "aas")):
    _ONE[_b] = _simple(_op)
for _b in range(0x40, 0x50):
    _ONE[_b] = _inc_dec_reg
for _b in range(0x50, 0x60):
    _ONE[_b] = _push_pop_reg
_ONE[0x60] = _simple("pusha", True)
_ONE[0x61] = _simple("popa", True)
_ONE[0x68] = _ONE[0x6A] = _push_imm
_ONE[0x69] = _ONE[0x6B] = _imul3
for _b in (0x6C, 0x6D, 0x6E, 0x6F, 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF):
    _ONE[_b] = _string
for _b in range(0x70, 0x80):
    _ONE[_b] = _jcc8
for _b in range(0x80, 0x84):
    _ONE[_b] = _grp1
_ONE[0x84] = _ONE[0x85] = _test_rm
_ONE[0x86] = _ONE[0x87] = _xchg_rm
for _b in range(0x88, 0x8C):
    _ONE[_b] = _mov_rm
_ONE[0x8C] = _ONE[0x8E] = _mov_sreg
_ONE[0x8D] = _lea
_ONE[0x8F] = _pop_rm
_ONE[0x90] = _nop90
for _b in range(0x91, 0x98):
    _ONE[_b] = _xchg_ax
_ONE[0x98] = _simple("cbw", True)
_ONE[0x99] = _simple("cwd", True)
_ONE[0x9A] = _ONE[0xEA] = _far_ptr
_ONE[0x9B] = _simple("fwait")
_ONE[0x9C] = _simple("pushf", True)
_ONE[0x9D] = _simple("popf", True)
_ONE[0x9E] = _simple("sahf")
_ONE[0x9F] = _simple("lahf")
for _b in range(0xA0, 0xA4):
    _ONE[_b] = _moffs
_ONE[0xA8] = _ONE[0xA9] = _test_acc
for _b in range(0xB0, 0xC0):
    _ONE[_b] = _mov_imm_reg
for _b in (0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3):
    _ONE[_b] = _grp2
for _b in (0xC2, 0xC3, 0xCA, 0xCB):
    _ONE[_b] = _ret
_ONE[0xC4] = _lseg(ES)
_ONE[0xC5] = _lseg(DS)
_ONE[0xC6] = _ONE[0xC7] = _mov_imm_rm
_ONE[0xC8] = _enter
_ONE[0xC9] = _simple("leave", True)
_ONE[0xCC] = _simple("int3")
_ONE[0xCD] = _int
_ONE[0xCE] = _simple("into")
_ONE[0xCF] = _simple("iret", True)
_ONE[0xD4] = _ONE[0xD5] = _aam_aad
_ONE[0xD7] = _simple("xlat")
for _b in range(0xD8, 0xE0):
    _ONE[_b] = _fpu
for _b in range(0xE0, 0xE4):
    _ONE[_b] = _loop
for _b in (0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF):
    _ONE[_b] = _in_out
_ONE[0xE8] = _ONE[0xE9] = _ONE[0xEB] = _call_jmp_rel
_ONE[0xF1] = _simple("int1")
_ONE[0xF4] = _simple("hlt")
for _b, _op in ((0xF5, "cmc"), (0xF8, "clc"), (0xF9, "stc"), (0xFA, "cli"), (0xFB, "sti"),
                (0xFC, "cld"), (0xFD, "std")):
    _ONE[_b] = _simple(_op)
_ONE[0xF6] = _ONE[0xF7] = _grp3
_ONE[0xFE] = _grp4
_ONE[0xFF] = _grp5


# --- two-byte opcodes (0F xx) ------------------------------------------------------


def _two_byte(r: _Reader) -> Insn:
    b = r.u8()
    o = r.osize
    if 0x80 <= b <= 0x8F:
        return _ins("jcc", o, cc=b & 15, target=r.rel(o))
    if 0x40 <= b <= 0x4F:
        reg, rm = r.modrm(o)
        return _ins("cmov", o, Reg(reg, o), rm, cc=b & 15)
    if 0x90 <= b <= 0x9F:
        _reg, rm = r.modrm(1)
        return _ins("setcc", 1, rm, cc=b & 15)
    if 0xC8 <= b <= 0xCF:
        return _ins("bswap", o, Reg(b & 7, o))
    if b in (0xB6, 0xB7, 0xBE, 0xBF):
        reg, rm = r.modrm(1 if b in (0xB6, 0xBE) else 2)
        return _ins("movzx" if b < 0xB8 else "movsx", o, Reg(reg, o), rm)
    if b in (0xA3, 0xAB, 0xB3, 0xBB):
        reg, rm = r.modrm(o)
        op = {0xA3: "bt", 0xAB: "bts", 0xB3: "btr", 0xBB: "btc"}[b]
        return _ins(op, o, rm, Reg(reg, o))
    if b == 0xBA:
        reg, rm = r.modrm(o)
        if reg < 4:
            raise _Invalid
        return _ins(("bt", "bts", "btr", "btc")[reg - 4], o, rm, r.imm(1))
    if b in (0xBC, 0xBD):
        reg, rm = r.modrm(o)
        return _ins("bsf" if b == 0xBC else "bsr", o, Reg(reg, o), rm)
    if b in (0xA4, 0xA5, 0xAC, 0xAD):
        reg, rm = r.modrm(o)
        count: Imm | Reg = r.imm(1) if b in (0xA4, 0xAC) else Reg(1, 1)
        return _ins("shld" if b < 0xA8 else "shrd", o, rm, Reg(reg, o), count)
    if b == 0xAF:
        reg, rm = r.modrm(o)
        return _ins("imul", o, Reg(reg, o), rm)
    if b in (0xB0, 0xB1, 0xC0, 0xC1):
        size = 1 if not b & 1 else o
        reg, rm = r.modrm(size)
        return _ins("cmpxchg" if b < 0xC0 else "xadd", size, rm, Reg(reg, size))
    if b == 0xC7:
        reg, rm = r.modrm(8)
        if reg != 1 or isinstance(rm, Reg):
            raise _Invalid
        return _ins("cmpxchg8b", 8, rm)
    if b in (0xA0, 0xA1, 0xA8, 0xA9):
        seg = FS if b < 0xA8 else GS
        return _ins("pop_sreg" if b & 1 else "push_sreg", o, SReg(seg))
    if b in (0xB2, 0xB4, 0xB5):
        return _lseg({0xB2: SS, 0xB4: FS, 0xB5: GS}[b])(r, b)
    if b == 0xA2:
        return _ins("cpuid", 4)
    if b == 0x31:
        return _ins("rdtsc", 4)
    if b in (0x30, 0x32):
        return _ins("wrmsr" if b == 0x30 else "rdmsr", 4)
    if b == 0x0B or b == 0xB9 or b == 0xFF:
        raise _Invalid
    if b == 0x0D or 0x18 <= b <= 0x1F:
        r.modrm(o)
        return _ins("nop", o)
    if b in (0x06, 0x08, 0x09):
        return _ins({0x06: "clts", 0x08: "wbinvd", 0x09: "wbinvd"}[b], 4)
    if b in (0x20, 0x21, 0x22, 0x23):
        mb = r.u8()
        kind = "cr" if b in (0x20, 0x22) else "dr"
        n = (mb >> 3) & 7
        if kind == "cr" and n not in (0, 2, 3, 4):
            raise _Invalid
        ctl, reg = Ctl(kind, n), Reg(mb & 7, 4)
        if b & 2:
            return _ins("mov_ctl", 4, ctl, reg)
        return _ins("mov_from_ctl", 4, reg, ctl)
    if b == 0x00:
        reg, rm = r.modrm(2)
        op = ("sldt", "str", "lldt", "ltr", "verr", "verw", None, None)[reg]
        if op is None:
            raise _Invalid
        return _ins(op, 2, rm)
    if b == 0x01:
        reg, rm = r.modrm(o)
        if reg in (0, 1, 2, 3):
            if isinstance(rm, Reg):
                raise _Invalid
            return _ins(("sgdt", "sidt", "lgdt", "lidt")[reg], o, rm)
        if reg == 4:
            return _ins("smsw", 2, rm)
        if reg == 6:
            return _ins("lmsw", 2, rm)
        if reg == 7 and not isinstance(rm, Reg):
            return _ins("invlpg", o, rm)
        raise _Invalid
    if b in (0x02, 0x03):
        reg, rm = r.modrm(2)
        return _ins("lar" if b == 0x02 else "lsl", o, Reg(reg, o), rm)
    raise _Invalid
