"""Arithmetic helpers called from translated code for the rarer, longer instructions.

Flags in and out are materialized EFLAGS arithmetic bits; results follow Intel's
definitions and, for flags Intel leaves undefined, QEMU's choices.
"""

from __future__ import annotations

from .faults import Fault
from .flags import AF, CF, OF, PARITY, SF, ZF

_CLEAR_CO = ~(CF | OF)


def div(n: int, d: int, bits: int) -> tuple[int, int]:
    """Unsigned DIV of the double-width ``n`` by ``d``: (quotient, remainder) or #DE."""
    if d == 0:
        raise Fault(0)
    q, r = divmod(n, d)
    if q >> bits:
        raise Fault(0)
    return q, r


def idiv(n: int, d: int, bits: int) -> tuple[int, int]:
    """Signed IDIV, truncating toward zero as x86 does (Python's // floors)."""
    mask = (1 << bits) - 1
    wide = 1 << (2 * bits)
    if n >= wide >> 1:
        n -= wide
    if d >> (bits - 1):
        d -= 1 << bits
    if d == 0:
        raise Fault(0)
    q = abs(n) // abs(d)
    if (n < 0) != (d < 0):
        q = -q
    r = n - q * d
    if not -(1 << (bits - 1)) <= q < 1 << (bits - 1):
        raise Fault(0)
    return q & mask, r & mask


def rcl(d: int, n: int, f: int, bits: int) -> tuple[int, int]:
    """RCL: rotate ``bits``+1 bits (value and CF); returns (result, flags) or (d, -1) if no-op."""
    n %= bits + 1
    if not n:
        return d, -1
    wide = d | (f & CF) << bits
    wide = ((wide << n) | (wide >> (bits + 1 - n))) & ((1 << (bits + 1)) - 1)
    r = wide & ((1 << bits) - 1)
    c = wide >> bits
    of = ((r ^ d) >> (bits - 1)) & 1  # Intel defines count 1 only; QEMU's rule for all
    return r, (f & _CLEAR_CO) | c | (OF if of else 0)


def rcr(d: int, n: int, f: int, bits: int) -> tuple[int, int]:
    n %= bits + 1
    if not n:
        return d, -1
    wide = d | (f & CF) << bits
    wide = ((wide >> n) | (wide << (bits + 1 - n))) & ((1 << (bits + 1)) - 1)
    r = wide & ((1 << bits) - 1)
    c = wide >> bits
    of = ((r ^ d) >> (bits - 1)) & 1
    return r, (f & _CLEAR_CO) | c | (OF if of else 0)


def _szp(r: int, bits: int) -> int:
    return PARITY[r & 0xFF] | (ZF if r == 0 else 0) | (SF if r >> (bits - 1) & 1 else 0)


def shld(d: int, s: int, n: int, f: int, bits: int) -> tuple[int, int]:
    """SHLD with count 1..31; 16-bit counts above 16 shift d:s:d (Intel, as QEMU)."""
    mask = (1 << bits) - 1
    if bits == 16:
        wide, high = (d << 32) | (s << 16) | d, 32
    else:
        wide, high = (d << 32) | s, 32
    r = ((wide << n) >> high) & mask
    out = ((wide << (n - 1)) >> high) & mask
    return r, _shift_flags(r, out >> (bits - 1), out, bits)


def shrd(d: int, s: int, n: int, f: int, bits: int) -> tuple[int, int]:
    mask = (1 << bits) - 1
    wide = d | (s << 16) | (d << 32) if bits == 16 else d | (s << 32)
    r = (wide >> n) & mask
    out = (wide >> (n - 1)) & mask
    return r, _shift_flags(r, out & 1, out, bits)


def _shift_flags(r: int, carry: int, out: int, bits: int) -> int:
    """Flags of a double shift; OF is QEMU's (sign of the last step) for every count."""
    return _szp(r, bits) | carry | (OF if (out ^ r) >> (bits - 1) & 1 else 0)


def daa(ax: int, f: int) -> tuple[int, int]:
    al, cf, af = ax & 0xFF, f & CF, f & AF
    old_al = al
    if (al & 0xF) > 9 or af:
        al = (al + 6) & 0xFF
        af = AF
    if old_al > 0x99 or cf:
        al = (al + 0x60) & 0xFF
        cf = CF
    return (ax & 0xFF00) | al, _szp(al, 8) | cf | af | (f & OF)


def das(ax: int, f: int) -> tuple[int, int]:
    al, cf, af = ax & 0xFF, f & CF, f & AF
    old_al = al
    if (al & 0xF) > 9 or af:
        cf = cf or (1 if al < 6 else 0)
        al = (al - 6) & 0xFF
        af = AF
    if old_al > 0x99 or f & CF:
        al = (al - 0x60) & 0xFF
        cf = CF
    return (ax & 0xFF00) | al, _szp(al, 8) | (CF if cf else 0) | af | (f & OF)


def aaa(ax: int, f: int) -> tuple[int, int]:
    if (ax & 0xF) > 9 or f & AF:
        ax = (ax + 0x106) & 0xFFFF
        return ax & 0xFF0F, (f & ~(CF | AF)) | CF | AF
    return ax & 0xFF0F, f & ~(CF | AF)


def aas(ax: int, f: int) -> tuple[int, int]:
    if (ax & 0xF) > 9 or f & AF:
        al = (ax - 6) & 0xFF
        ah = ((ax >> 8) - 1) & 0xFF
        return (ah << 8) | (al & 0xF), (f & ~(CF | AF)) | CF | AF
    return ax & 0xFF0F, f & ~(CF | AF)


def aam(ax: int, f: int, base: int) -> tuple[int, int]:
    if base == 0:
        raise Fault(0)
    al = ax & 0xFF
    ah, al = divmod(al, base)
    return (ah << 8) | al, _szp(al, 8)


def aad(ax: int, f: int, base: int) -> tuple[int, int]:
    al = ((ax & 0xFF) + (ax >> 8) * base) & 0xFF
    return al, _szp(al, 8)
