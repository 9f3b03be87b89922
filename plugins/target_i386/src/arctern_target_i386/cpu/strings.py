"""String instructions with REP/REPE/REPNE (and INS/OUTS), run as one helper call.

Bulk paths handle the common cases a C library produces (``rep stosl`` for
memset, ``rep movsl`` for memcpy, ``repne scasb`` for strlen) with bytearray
slicing when the operands are in RAM and paging is off; everything else goes
element by element with registers committed after each element, so a fault
mid-way leaves a restartable state as on hardware. A long REP stops after
:data:`MAX_ELEMENTS` elements with :class:`RepYield`: the CPU ends its slice there
(the instruction resumes in the next one), so the main loop keeps servicing devices.
"""

from __future__ import annotations

from .decoder import ES
from .flags import DF, SUB, op_code
from .mmu import CR0_PG

MAX_ELEMENTS = 1 << 14


class RepYield(Exception):  # noqa: N818 - a control-flow signal
    """A REP string instruction paused with its registers committed; resume it later.

    ``args[0]``: the elements done, counted as retired instructions (as QEMU counts
    each iteration of a REP).
    """


class StringMixin:
    def h_string(self, op: str, size: int, seg: int, rep: str, asize: int) -> None:
        """Execute a string instruction (raises :class:`RepYield` to pause a long REP)."""
        r = self.r
        amask = 0xFFFFFFFF if asize == 4 else 0xFFFF
        step = -size if self.eflags & DF else size
        count = r[1] & amask if rep else 1
        if count == 0:
            return
        bulk = rep and asize == 4 and not self.cr[0] & CR0_PG
        if bulk and self._bulk(op, size, seg, rep, step, count):
            return
        mask = (1 << (size * 8)) - 1
        src_base, dst_base = self.segbase[seg], self.segbase[ES]
        read, write = self.read_lin, self.write_lin
        io = self.machine.io
        n = 0
        while True:
            esi, edi = r[6] & amask, r[7] & amask
            src, dst = (src_base + esi) & 0xFFFFFFFF, (dst_base + edi) & 0xFFFFFFFF
            if op == "movs":
                write(dst, size, read(src, size))
            elif op == "stos":
                write(dst, size, r[0] & mask)
            elif op == "lods":
                value = read(src, size)
                r[0] = (r[0] & ~mask & 0xFFFFFFFF) | value
            elif op == "ins":
                write(dst, size, io.read(r[2] & 0xFFFF, size))
            elif op == "outs":
                io.write(r[2] & 0xFFFF, size, read(src, size))
            else:
                b = read(dst, size)
                a = r[0] & mask if op == "scas" else read(src, size)
                self.fl = (op_code(SUB, size), (a - b) & mask, a, b)
            if op in ("movs", "lods", "outs", "cmps"):
                r[6] = (r[6] & ~amask) | ((esi + step) & amask)
            if op not in ("lods", "outs"):
                r[7] = (r[7] & ~amask) | ((edi + step) & amask)
            if not rep:
                return
            count = (count - 1) & amask
            r[1] = (r[1] & ~amask) | count
            if count == 0:
                return
            if op in ("cmps", "scas") and (self.fl[1] == 0) != (rep == "rep"):
                return
            n += 1
            if n >= MAX_ELEMENTS:
                raise RepYield(n)

    def _bulk(self, op: str, size: int, seg: int, rep: str, step: int, count: int) -> bool:
        """RAM-only fast paths; False when the general loop must run."""
        ram = self.ram
        r = self.r
        length = count * size
        if op == "stos":
            dst = (self.segbase[ES] + r[7]) & 0xFFFFFFFF
            lo = dst if step > 0 else dst - length + size
            if not (ram.base <= lo and lo + length <= ram.end):
                return False
            off = lo - ram.base
            ram.data[off : off + length] = (r[0] & ((1 << (size * 8)) - 1)).to_bytes(
                size, "little"
            ) * count
            self.phys.stored(off, length)
            r[7] = (r[7] + step * count) & 0xFFFFFFFF
            r[1] = 0
            return True
        if op == "movs":
            src = (self.segbase[seg] + r[6]) & 0xFFFFFFFF
            dst = (self.segbase[ES] + r[7]) & 0xFFFFFFFF
            src_lo = src if step > 0 else src - length + size
            dst_lo = dst if step > 0 else dst - length + size
            if step > 0 and src_lo < dst_lo < src_lo + length:
                return False
            if step < 0 and dst_lo < src_lo < dst_lo + length:
                return False
            for lo in (src_lo, dst_lo):
                if not (ram.base <= lo and lo + length <= ram.end):
                    return False
            s, d = src_lo - ram.base, dst_lo - ram.base
            ram.data[d : d + length] = ram.data[s : s + length]
            self.phys.stored(d, length)
            r[6] = (r[6] + step * count) & 0xFFFFFFFF
            r[7] = (r[7] + step * count) & 0xFFFFFFFF
            r[1] = 0
            return True
        if op == "scas" and rep == "repne" and size == 1 and step > 0:
            start = (self.segbase[ES] + r[7]) & 0xFFFFFFFF
            if not (ram.base <= start and start + length <= ram.end):
                return False
            off = start - ram.base
            al = r[0] & 0xFF
            found = ram.data.find(al, off, off + length)
            used = count if found < 0 else found - off + 1
            last = ram.data[off + used - 1]
            self.fl = (op_code(SUB, 1), (al - last) & 0xFF, al, last)
            r[7] = (r[7] + used) & 0xFFFFFFFF
            r[1] = (count - used) & 0xFFFFFFFF
            return True
        return False
