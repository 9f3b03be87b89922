"""Lazy EFLAGS: the last flag-setting operation is kept as (op, result, a, b).

Translated code stores four locals per flag-setting instruction and derives a
flag only when something reads it. ``op`` is ``kind << 2 | log2(size)``;
``FLAGS[op](r, a, b)`` returns the six arithmetic flags. Where Intel leaves a
flag undefined the functions follow QEMU, whose choices guests in the wild and
unicorn-engine (our differential reference) share.

Operands per kind:
ADD/ADC  r = a + b (+carry in); the carry in is recovered as (r - a - b) & mask
SUB/SBB  r = a - b (-borrow in); NEG is SUB with a = 0; CMP is SUB
LOGIC    r = result; CF = OF = AF = 0
INC/DEC  a = operand before, b = CF before (INC/DEC keep CF)
SHL/SHR/SAR a = value before, b = count (1..31)
MUL      r = low half of the result, b = 1 when the result did not fit (CF = OF)
EFL      r = the flags themselves (materialized: POPF, SAHF, rotates, BT, ...)
"""

from __future__ import annotations

from collections.abc import Callable

CF, PF, AF, ZF, SF, TF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
NT, RF, VM, AC, ID = 0x4000, 0x10000, 0x20000, 0x40000, 0x200000
IOPL = 0x3000
ARITH = CF | PF | AF | ZF | SF | OF

EFL, ADD, ADC, SUB, SBB, LOGIC, INC, DEC, SHL, SHR, SAR, MUL = range(12)
F_EFL = EFL
KIND_NAMES = ("EFL", "ADD", "ADC", "SUB", "SBB", "LOGIC", "INC", "DEC", "SHL", "SHR", "SAR", "MUL")

SIZE_LOG = {1: 0, 2: 1, 4: 2}

#: PF value (0 or 4) for each low byte of a result.
PARITY = bytes(PF if bin(i).count("1") % 2 == 0 else 0 for i in range(256))


def op_code(kind: int, size: int) -> int:
    return kind << 2 | SIZE_LOG[size]


def _szp(r: int, sign: int) -> int:
    return PARITY[r & 0xFF] | (ZF if r == 0 else 0) | (SF if r & sign else 0)


def _make(kind: int, size: int) -> Callable[[int, int, int], int]:
    bits = size * 8
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    top = bits - 1

    if kind == EFL:
        return lambda r, a, b: r
    if kind in (ADD, ADC):

        def add(r: int, a: int, b: int) -> int:
            cin = (r - a - b) & mask
            f = _szp(r, sign) | ((a ^ b ^ r) & AF)
            if a + b + cin > mask:
                f |= CF
            if (a ^ r) & (b ^ r) & sign:
                f |= OF
            return f

        return add
    if kind in (SUB, SBB):

        def sub(r: int, a: int, b: int) -> int:
            bin_ = (a - b - r) & mask
            f = _szp(r, sign) | ((a ^ b ^ r) & AF)
            if a < b + bin_:
                f |= CF
            if (a ^ b) & (a ^ r) & sign:
                f |= OF
            return f

        return sub
    if kind == LOGIC:
        return lambda r, a, b: _szp(r, sign)
    if kind == INC:
        return lambda r, a, b: (
            _szp(r, sign) | b | (AF if r & 0xF == 0 else 0) | (OF if r == sign else 0)
        )
    if kind == DEC:
        return lambda r, a, b: (
            _szp(r, sign) | b | (AF if r & 0xF == 0xF else 0) | (OF if a == sign else 0)
        )
    if kind == SHL:

        def shl(r: int, a: int, b: int) -> int:
            src = (a << (b - 1)) & mask
            c = src >> top
            return _szp(r, sign) | c | (OF if (src ^ r) & sign else 0)

        return shl
    if kind in (SHR, SAR):

        def shr(r: int, a: int, b: int) -> int:
            if kind == SAR and a & sign:
                a -= 1 << bits
            src = (a >> (b - 1)) & mask
            return _szp(r, sign) | (src & 1) | (OF if (src ^ r) & sign else 0)

        return shr
    if kind == MUL:
        return lambda r, a, b: _szp(r, sign) | (CF | OF if b else 0)
    raise ValueError(kind)


#: FLAGS[op](r, a, b) -> the arithmetic flags of EFLAGS.
FLAGS: list[Callable[[int, int, int], int]] = [
    _make(kind, size) for kind in range(len(KIND_NAMES)) for size in (1, 2, 4, 4)
]


def carry(op: int, r: int, a: int, b: int) -> int:
    """CF alone (ADC/SBB/RCL/RCR carry in)."""
    return FLAGS[op](r, a, b) & CF


#: Condition codes 0..15 (o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g),
#: each as a Python expression over a flags value named ``f``.
_COND_ON_F = (
    "f & 0x800",
    "f & 0x1",
    "f & 0x40",
    "f & 0x41",
    "f & 0x80",
    "f & 0x4",
    "(f ^ (f >> 4)) & 0x80",
    "(f ^ (f >> 4)) & 0x80 or f & 0x40",
)

COND_NAMES = tuple("o no b ae e ne be a s ns p np l ge le g".split())


def cond_on_flags(cc: int, f: str = "f") -> str:
    """Expression testing condition ``cc`` on the flags value held in variable ``f``."""
    expr = _COND_ON_F[cc >> 1].replace("f", f)
    return f"not ({expr})" if cc & 1 else f"({expr})"


def cond_static(
    cc: int, kind: int, size: int, r: str = "fr", a: str = "fa", b: str = "fb"
) -> str | None:
    """Expression for ``cc`` after a known operation whose (result, a, b) are ``r, a, b``.

    This is where ``cmp a, b; jl`` becomes one Python comparison. None: no shortcut.
    """
    sign = 1 << (size * 8 - 1)
    base, neg = cc >> 1, cc & 1
    expr = None
    if kind == F_EFL:
        return cond_on_flags(cc, r)
    if base == 2 and kind == SUB:
        expr = f"{a} == {b}"
    elif base == 2:
        expr = f"{r} == 0"
    elif base == 4:
        expr = f"{r} & {sign:#x}"
    elif base == 5:
        expr = f"PARITY[{r} & 0xff]"
    elif kind == SUB:
        expr = {
            0: f"({a} ^ {b}) & ({a} ^ {r}) & {sign:#x}",
            1: f"{a} < {b}",
            3: f"{a} <= {b}",
            6: f"({a} ^ {sign:#x}) < ({b} ^ {sign:#x})",
            7: f"({a} ^ {sign:#x}) <= ({b} ^ {sign:#x})",
        }.get(base)
    elif kind == LOGIC:
        expr = {
            0: "False",
            1: "False",
            3: f"{r} == 0",
            6: f"{r} & {sign:#x}",
            7: f"{r} == 0 or {r} & {sign:#x}",
        }.get(base)
    elif kind == ADD:
        expr = {
            0: f"({a} ^ {r}) & ({b} ^ {r}) & {sign:#x}",
            1: f"{r} < {a}",
            3: f"{r} < {a} or {r} == 0",
        }.get(base)
    if expr is None:
        return None
    return f"not ({expr})" if neg else f"({expr})"
