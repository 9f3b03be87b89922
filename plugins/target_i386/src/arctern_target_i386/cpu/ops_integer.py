"""Emitters of the integer instructions: moves, arithmetic, shifts, multiplication and
division, bit operations, flag operations, the stack and near control transfers."""

from __future__ import annotations

from . import flags as F
from .compiler import (
    CARRY_IN,
    MASKS,
    NO_OPERAND,
    REGS,
    SIGNS,
    CompilerBase,
)
from .decoder import DS, Imm, Insn, Mem, Reg

_ALU_EXPR = {
    "add": "({d} + {s}) & {m}",
    "adc": "({d} + {s} + c) & {m}",
    "sub": "({d} - {s}) & {m}",
    "cmp": "({d} - {s}) & {m}",
    "sbb": "({d} - {s} - c) & {m}",
    "and": "{d} & {s}",
    "or": "{d} | {s}",
    "xor": "{d} ^ {s}",
    "test": "{d} & {s}",
}
_ALU_KIND = {
    "add": F.ADD, "adc": F.ADC, "sub": F.SUB, "cmp": F.SUB, "sbb": F.SBB,
    "and": F.LOGIC, "or": F.LOGIC, "xor": F.LOGIC, "test": F.LOGIC,
}
# Flag liveness: instructions that define all six flags (before them flags are dead) ...


def _same_reg(a: Reg, b: Reg) -> bool:
    """Do the two register operands share bits (AL and EAX, AH and AX, ...)?"""
    return (a.n if a.size > 1 else a.n & 3) == (b.n if b.size > 1 else b.n & 3)


class IntegerOps(CompilerBase):

    def g_nop(self, i: Insn) -> None:
        self.e("pass")

    def g_ud(self, i: Insn) -> None:
        self.fault(6)

    def g_toolong(self, i: Insn) -> None:
        self.fault(13, 0)

    def g_fpu(self, i: Insn) -> None:
        self.e("if cpu.cr[0] & 0xc: raise Fault(7)")
        self.fault(6)

    def g_fwait(self, i: Insn) -> None:
        self.e("if cpu.cr[0] & 0xa == 0xa: raise Fault(7)")
        self.exit(i.next)

    def g_mov(self, i: Insn) -> None:
        dst, src = i.ops
        if isinstance(dst, Mem):
            v = self.rd(src)
            self.addr(dst)
            self.st("a", i.size, v, last=True)
        elif isinstance(src, Mem) and self.fast:
            self.set_reg(dst.n, dst.size, self.ld_ea(src, src.size))
        elif src != dst:
            self.set_reg(dst.n, dst.size, self.rd(src))

    def g_movzx(self, i: Insn) -> None:
        dst, src = i.ops
        if isinstance(src, Mem) and self.fast:
            self.set_reg(dst.n, dst.size, self.ld_ea(src, src.size))
        else:
            self.set_reg(dst.n, dst.size, self.rd(src))

    def g_movsx(self, i: Insn) -> None:
        dst, src = i.ops
        sign = SIGNS[src.size]
        v = self.rd_tmp(src, "t")
        self.set_reg(dst.n, dst.size, f"(({v} ^ {sign:#x}) - {sign:#x}) & {MASKS[dst.size]:#x}")

    def g_lea(self, i: Insn) -> None:
        dst, src = i.ops
        expr = self.ea(src, with_seg=False)
        if dst.size == 2:
            expr = f"({expr}) & 0xffff"
        if expr != REGS[dst.n]:  # "lea esi, [esi]" is a NOP gcc pads with
            self.set_reg(dst.n, dst.size, expr)

    def _alu(self, i: Insn) -> None:
        dst, src = i.ops
        op, size = i.op, i.size
        m = MASKS[size]
        kind = _ALU_KIND[op]
        writes = op not in ("cmp", "test")
        if isinstance(dst, Mem):
            s = self.rd(src)
            self.addr(dst)
            self.e(f"d = {self.ld('a', size)}")
            if op in ("adc", "sbb"):
                self.carry()
            if not writes:
                self.set_flags(kind, size, _ALU_EXPR[op].format(d="d", s=s, m=m), "d", s)
                return
            self.e("r = " + _ALU_EXPR[op].format(d="d", s=s, m=m))
            self.st("a", size, "r")
            self.set_flags(kind, size, "r", "d", s)
            return
        if isinstance(src, Mem) and writes and (kind == F.LOGIC or not self.needed[self.idx]):
            s = self.ld_ea(src, src.size) if self.fast else self.rd_tmp(src, "s")
        else:
            s = self.rd_tmp(src, "s")
        if isinstance(src, Reg) and writes and _same_reg(src, dst) and src != dst:
            self.e(f"s = {s}")
            s = "s"
        d = self.reg(dst.n, size)
        if op in ("adc", "sbb"):
            self.carry()
        zero = op in ("xor", "sub") and src == dst
        if not writes:
            self.set_flags(kind, size, _ALU_EXPR[op].format(d=d, s=s, m=m), d, s)
            return
        if not self.needed[self.idx]:
            self.set_reg(dst.n, size, "0" if zero else _ALU_EXPR[op].format(d=d, s=s, m=m))
            self.set_flags(kind, size, "0")
            return
        if kind == F.LOGIC:
            self.set_reg(dst.n, size, "0" if zero else _ALU_EXPR[op].format(d=d, s=s, m=m))
            self.set_flags(kind, size, self.reg(dst.n, size))
            return
        if op in ("add", "sub") and self._only_result_flags_read():
            self.set_reg(dst.n, size, "0" if zero else _ALU_EXPR[op].format(d=d, s=s, m=m))
            self.set_flags(kind, size, self.reg(dst.n, size), NO_OPERAND, s)
            return
        self.e(f"d = {d}")
        if s == d:
            s = "d"
        self.set_reg(dst.n, size, "0" if zero else _ALU_EXPR[op].format(d="d", s=s, m=m))
        self.set_flags(kind, size, self.reg(dst.n, size), "d", s)

    def _only_result_flags_read(self) -> bool:
        """Is the next instruction a jcc on ZF/SF/PF whose targets need no stored flags?

        Then ``sub ecx, 1; jne`` needs neither the old value nor stored flags: the
        jump tests the register itself.
        """
        if self.idx + 1 >= len(self.insns):
            return False
        nxt = self.insns[self.idx + 1]
        if nxt.op != "jcc" or nxt.cc >> 1 not in (2, 4, 5) or not self.counted:
            return False
        return all(
            t in self.block_counts and not self.live_in[t] for t in (nxt.target, nxt.next)
        )

    g_add = g_or = g_adc = g_sbb = g_and = g_sub = g_xor = g_cmp = g_test = _alu

    def _incdec(self, i: Insn) -> None:
        (dst,) = i.ops
        size = i.size
        m = MASKS[size]
        delta = "+ 1" if i.op == "inc" else "- 1"
        if isinstance(dst, Reg) and self._only_result_flags_read():
            self.set_reg(dst.n, size, f"({self.reg(dst.n, size)} {delta}) & {m:#x}")
            self.set_flags(F.DEC, size, self.reg(dst.n, size), NO_OPERAND, CARRY_IN)
            return
        if isinstance(dst, Mem):
            self.addr(dst)
            self.e(f"d = {self.ld('a', size)}")
        else:
            self.e(f"d = {self.reg(dst.n, size)}")
        self.e(f"r = (d {delta}) & {m:#x}")
        self.wr(dst, "r")
        self.set_flags(F.INC if i.op == "inc" else F.DEC, size, "r", "d", CARRY_IN)

    g_inc = g_dec = _incdec

    def g_neg(self, i: Insn) -> None:
        (dst,) = i.ops
        if isinstance(dst, Mem):
            self.addr(dst)
        self.e(f"d = {self.rd_value(dst)}", f"r = -d & {MASKS[i.size]:#x}")
        self.wr(dst, "r")
        self.set_flags(F.SUB, i.size, "r", "0", "d")

    def rd_value(self, op) -> str:
        """Read an operand whose address (if memory) is already in ``a``."""
        if isinstance(op, Mem):
            return self.ld("a", op.size)
        return self.rd(op)

    def g_not(self, i: Insn) -> None:
        (dst,) = i.ops
        if isinstance(dst, Mem):
            self.addr(dst)
        self.e(f"r = {self.rd_value(dst)} ^ {MASKS[i.size]:#x}")
        self.wr(dst, "r")

    def _shift(self, i: Insn) -> None:
        dst, count = i.ops
        size = i.size
        bits, m, sign = size * 8, MASKS[size], SIGNS[size]
        if (
            isinstance(count, Imm) and isinstance(dst, Reg) and count.value & 0x1F
            and i.op in ("shl", "shr", "sar") and not self.needed[self.idx]
        ):
            n, d = count.value & 0x1F, self.reg(dst.n, size)
            expr = {
                "shl": f"({d} << {n}) & {m:#x}",
                "shr": f"{d} >> {n}",
                "sar": f"((({d} ^ {sign:#x}) - {sign:#x}) >> {n}) & {m:#x}",
            }[i.op]
            self.set_reg(dst.n, size, expr)
            self.set_flags(F.SHL, size, "0")
            return
        if isinstance(dst, Mem):
            self.addr(dst)
        self.e(f"d = {self.rd_value(dst)}")
        if isinstance(count, Imm):
            n = count.value & 0x1F
            if not n:
                return
            self.e(f"n = {n}")
        else:
            self.e(f"n = {self.reg(1, 1)} & 0x1f")
            self.e("if n:")
            self.src.depth += 1
        op = i.op
        if op == "shl":
            self.e(f"r = (d << n) & {m:#x}")
        elif op == "shr":
            self.e("r = d >> n")
        elif op == "sar":
            self.e(f"r = (((d ^ {sign:#x}) - {sign:#x}) >> n) & {m:#x}")
        if op in ("shl", "shr", "sar"):
            self.wr(dst, "r")
            kind = {"shl": F.SHL, "shr": F.SHR, "sar": F.SAR}[op]
            self.set_flags(kind, size, "r", "d", "n")
        elif op in ("rol", "ror"):
            self.e(f"k = n % {bits}")
            if op == "rol":
                self.e(f"r = ((d << k) | (d >> ({bits} - k))) & {m:#x}")
            else:
                self.e(f"r = ((d >> k) | (d << ({bits} - k))) & {m:#x}")
            self.wr(dst, "r")
            if self.needed[self.idx]:
                self.e(f"f = {self.materialize_expr()} & 0xfffff7fe")
                if op == "rol":
                    self.e(f"c = r & 1; f |= c | (0x800 if (r >> {bits - 1}) ^ c else 0)")
                else:
                    self.e(
                        f"f |= (r >> {bits - 1}) | "
                        f"(0x800 if ((r >> {bits - 1}) ^ (r >> {bits - 2})) & 1 else 0)"
                    )
                self.set_efl("f")
            else:
                self.fkind = None
        else:  # rcl / rcr
            self.e(f"f = {self.materialize_expr()}")
            self.e(f"r, f = H.{op}(d, n, f, {bits})")
            self.e("if f >= 0:")
            self.src.depth += 1
            self.wr(dst, "r")
            self.set_efl("f")
            self.src.depth -= 1
            self.fkind = None
        if not isinstance(count, Imm):
            self.src.depth -= 1
            self.fkind = None

    g_shl = g_shr = g_sar = g_rol = g_ror = g_rcl = g_rcr = _shift

    def _shxd(self, i: Insn) -> None:
        dst, src, count = i.ops
        if isinstance(dst, Mem):
            self.addr(dst)
        self.e(f"d = {self.rd_value(dst)}", f"s = {self.reg(src.n, i.size)}")
        if isinstance(count, Imm):
            self.e(f"n = {count.value & 0x1f}")
        else:
            self.e(f"n = {self.reg(1, 1)} & 0x1f")
        self.e("if n:")
        self.src.depth += 1
        self.e(f"f = {self.materialize_expr()}")
        self.e(f"r, f = H.{i.op}(d, s, n, f, {i.size * 8})")
        self.wr(dst, "r")
        self.set_efl("f")
        self.src.depth -= 1
        self.fkind = None

    g_shld = g_shrd = _shxd

    def g_mul(self, i: Insn) -> None:
        self._mul1(i, signed=False)

    def g_imul1(self, i: Insn) -> None:
        self._mul1(i, signed=True)

    def _mul1(self, i: Insn, signed: bool) -> None:
        (src,) = i.ops
        size = i.size
        bits, m, sign = size * 8, MASKS[size], SIGNS[size]
        s = self.rd_tmp(src, "s")
        acc = self.reg(0, size)
        if signed:
            self.e(f"p = (({acc} ^ {sign:#x}) - {sign:#x}) * (({s} ^ {sign:#x}) - {sign:#x})")
            self.e(f"lo = p & {m:#x}", f"hi = (p >> {bits}) & {m:#x}")
            self.e(f"o = 0 if -{sign:#x} <= p < {sign:#x} else 1")
        else:
            self.e(f"p = {acc} * {s}", f"lo = p & {m:#x}", f"hi = p >> {bits}")
            self.e("o = 1 if hi else 0")
        if size == 1:
            self.set_reg(0, 2, "p & 0xffff")
        else:
            self.set_reg(0, size, "lo")
            self.set_reg(2, size, "hi")
        self.set_flags(F.MUL, size, "lo", "0", "o")

    def g_imul(self, i: Insn) -> None:
        dst, src = i.ops[:2]
        size = i.size
        m, sign = MASKS[size], SIGNS[size]
        s = self.rd_tmp(src, "s")
        if len(i.ops) == 3:
            value = i.ops[2].value
            other = str((value ^ sign) - sign)
        else:
            other = f"(({self.reg(dst.n, size)} ^ {sign:#x}) - {sign:#x})"
        product = f"{other} * (({s} ^ {sign:#x}) - {sign:#x})"
        if not self.needed[self.idx]:
            self.set_reg(dst.n, size, f"({product}) & {m:#x}")
            self.set_flags(F.MUL, size, "0")
            return
        self.e(f"p = {product}")
        self.set_reg(dst.n, size, f"p & {m:#x}")
        self.e(f"o = 0 if -{sign:#x} <= p < {sign:#x} else 1")
        self.set_flags(F.MUL, size, self.reg(dst.n, size), "0", "o")

    def _div(self, i: Insn) -> None:
        (src,) = i.ops
        size = i.size
        bits = size * 8
        s = self.rd_tmp(src, "s")
        if size == 1:
            self.e(f"n = {self.reg(0, 2)}")
        else:
            self.e(f"n = ({self.reg(2, size)} << {bits}) | {self.reg(0, size)}")
        self.e(f"q, r = H.{i.op}(n, {s}, {bits})")
        if size == 1:
            self.set_reg(0, 2, "(r << 8) | q")
        else:
            self.set_reg(0, size, "q")
            self.set_reg(2, size, "r")

    g_div = g_idiv = _div

    def g_jcc(self, i: Insn) -> None:
        self.branch(self.cond(i.cc), i.target, i.next)

    def g_setcc(self, i: Insn) -> None:
        (dst,) = i.ops
        cond = self.cond(i.cc)
        self.pending = None
        if isinstance(dst, Mem):
            self.addr(dst)
        self.wr(dst, f"(1 if {cond} else 0)")

    def g_cmov(self, i: Insn) -> None:
        dst, src = i.ops
        s = self.rd_tmp(src, "s")
        self.e(f"if {self.cond(i.cc)}:")
        self.pending = None
        self.src.depth += 1
        self.set_reg(dst.n, i.size, s)
        self.src.depth -= 1

    def g_jmp(self, i: Insn) -> None:
        self.jump(i.target, tail=True)

    def g_jmp_ind(self, i: Insn) -> None:
        self.e(f"t = {self.rd(i.ops[0])}")
        self.jump("t")

    def g_call(self, i: Insn) -> None:
        self.push(f"{i.next:#x}", i.size)
        self.jump(i.target, tail=True)

    def g_call_ind(self, i: Insn) -> None:
        self.e(f"t = {self.rd(i.ops[0])}")
        self.push(f"{i.next:#x}", i.size)
        self.jump("t")

    def g_ret(self, i: Insn) -> None:
        self.pop_value(i.size, "t")
        self.pop_commit(i.size + i.ops[0].value)
        self.jump("t")

    def _loop(self, i: Insn) -> None:
        m = MASKS[i.asize]
        creg = self.reg(1, i.asize)
        if i.op == "jecxz":
            self.branch(f"{creg} == 0", i.target, i.next)
            return
        self.set_reg(1, i.asize, f"({creg} - 1) & {m:#x}")
        creg = self.reg(1, i.asize)
        cond = f"{creg} != 0"
        if i.op == "loope":
            cond += f" and {self.cond(4)}"
        elif i.op == "loopne":
            cond += f" and {self.cond(5)}"
        self.branch(cond, i.target, i.next)

    g_loop = g_loope = g_loopne = g_jecxz = _loop

    def g_push(self, i: Insn) -> None:
        (src,) = i.ops
        self.push(self.rd_tmp(src, "t"), i.size)

    def g_pop(self, i: Insn) -> None:
        (dst,) = i.ops
        self.pop_value(i.size, "t")
        self.pop_commit(i.size)
        if isinstance(dst, Mem):
            self.addr(dst)
        self.wr(dst, "t")

    def g_pusha(self, i: Insn) -> None:
        size = i.size
        self.used.add(4)
        self.e("t = esp")
        for k, n in enumerate(range(8)):
            v = ("t" if size == 4 else "(t & 0xffff)") if n == 4 else self.reg(n, size)
            off = (k + 1) * size
            self.e(f"a2 = {self.stack_addr(f'(esp - {off}) & 0xffffffff')}")
            self.st("a2", size, v)
        self.set_reg(4, 4, f"(esp - {8 * size}) & 0xffffffff")

    def g_popa(self, i: Insn) -> None:
        size = i.size
        self.used.add(4)
        for k, n in enumerate(range(7, -1, -1)):
            self.e(f"a2 = {self.stack_addr(f'(esp + {k * size}) & 0xffffffff')}")
            self.e(f"v{n} = {self.ld('a2', size)}")
        for n in range(8):
            if n != 4:
                self.set_reg(n, size, f"v{n}")
        self.set_reg(4, 4, f"(esp + {8 * size}) & 0xffffffff")

    def g_pushf(self, i: Insn) -> None:
        expr = f"(cpu.eflags | {self.materialize_expr()})"
        if i.size == 2:
            expr += " & 0xffff"
        self.push(expr, i.size)

    def g_popf(self, i: Insn) -> None:
        self.pop_value(i.size, "t")
        self.pop_commit(i.size)
        self.sync_call(f"cpu.h_popf(t, {i.size})")
        self.exit(i.next)

    def g_lahf(self, i: Insn) -> None:
        self.set_reg(4, 1, f"({self.materialize_expr()} & 0xd5) | 2")

    def g_sahf(self, i: Insn) -> None:
        self.set_efl(f"({self.materialize_expr()} & 0x800) | ({self.reg(4, 1)} & 0xd5)")

    def _flagbit(self, i: Insn) -> None:
        f = self.materialize_expr()
        expr = {"clc": f"{f} & ~1", "stc": f"{f} | 1", "cmc": f"{f} ^ 1"}[i.op]
        self.set_efl(expr)

    g_clc = g_stc = g_cmc = _flagbit

    def g_cld(self, i: Insn) -> None:
        self.e("cpu.eflags &= ~0x400")

    def g_std(self, i: Insn) -> None:
        self.e("cpu.eflags |= 0x400")

    def g_cli(self, i: Insn) -> None:
        if self.mode.cpl:
            self.e(f"if {self.mode.cpl} > (cpu.eflags >> 12) & 3: raise Fault(13, 0)")
        self.e("cpu.eflags &= ~0x200")

    def g_sti(self, i: Insn) -> None:
        if self.mode.cpl:
            self.e(f"if {self.mode.cpl} > (cpu.eflags >> 12) & 3: raise Fault(13, 0)")
        self.e("cpu.eflags |= 0x200; cpu.inhibit = True")
        self.exit(i.next)

    def g_hlt(self, i: Insn) -> None:
        self.e("cpu.halted = True; cpu.inhibit = False")
        self.exit(i.next)

    def g_cbw(self, i: Insn) -> None:
        if i.size == 2:
            self.set_reg(0, 2, "((eax & 0xff) ^ 0x80) - 0x80 & 0xffff")
        else:
            self.set_reg(0, 4, "((eax & 0xffff) ^ 0x8000) - 0x8000 & 0xffffffff")

    def g_cwd(self, i: Insn) -> None:
        sign, m = SIGNS[i.size], MASKS[i.size]
        self.set_reg(2, i.size, f"{m:#x} if {self.reg(0, i.size)} & {sign:#x} else 0")

    def g_xchg(self, i: Insn) -> None:
        a, b = i.ops
        if isinstance(a, Mem):
            self.addr(a)
            self.e(f"t = {self.ld('a', i.size)}", f"s = {self.reg(b.n, i.size)}")
            self.st("a", i.size, "s")
            self.set_reg(b.n, i.size, "t")
            return
        if a == b:
            return
        self.e(f"t = {self.reg(a.n, i.size)}", f"s = {self.reg(b.n, i.size)}")
        self.set_reg(a.n, i.size, "s")
        self.set_reg(b.n, i.size, "t")

    def g_xadd(self, i: Insn) -> None:
        dst, src = i.ops
        m = MASKS[i.size]
        if isinstance(dst, Mem):
            self.addr(dst)
        self.e(f"d = {self.rd_value(dst)}", f"s = {self.reg(src.n, i.size)}")
        self.e(f"r = (d + s) & {m:#x}")
        if isinstance(dst, Mem):
            self.st("a", i.size, "r")
            self.set_reg(src.n, i.size, "d")
        else:
            self.set_reg(src.n, i.size, "d")
            self.set_reg(dst.n, i.size, "r")
        self.set_flags(F.ADD, i.size, "r", "d", "s")

    def g_cmpxchg(self, i: Insn) -> None:
        dst, src = i.ops
        size = i.size
        if isinstance(dst, Mem):
            self.addr(dst)
        self.e(f"d = {self.rd_value(dst)}", f"x = {self.reg(0, size)}")
        self.e(f"s = {self.reg(src.n, size)}")
        if isinstance(dst, Mem):
            self.st("a", size, "s if x == d else d")
            self.e("if x != d:")
            self.src.depth += 1
            self.set_reg(0, size, "d")
            self.src.depth -= 1
        else:
            self.e("if x == d:")
            self.src.depth += 1
            self.set_reg(dst.n, size, "s")
            self.src.depth -= 1
            self.e("else:")
            self.src.depth += 1
            self.set_reg(0, size, "d")
            self.src.depth -= 1
        self.needed[self.idx] = True
        self.set_flags(F.SUB, size, f"(x - d) & {MASKS[size]:#x}", "x", "d")

    def g_cmpxchg8b(self, i: Insn) -> None:
        (dst,) = i.ops
        self.addr(dst)
        self.e(f"lo = {self.ld('a', 4)}", "a2 = (a + 4) & 0xffffffff", f"hi = {self.ld('a2', 4)}")
        self.e(f"z = lo == {self.reg(0)} and hi == {self.reg(2)}")
        self.e(f"f = {self.materialize_expr()} & ~0x40")
        self.st("a", 4, f"{self.reg(3)} if z else lo")
        self.st("a2", 4, f"{self.reg(1)} if z else hi")
        self.e("if z:")
        self.e("    f |= 0x40")
        self.e("else:")
        self.src.depth += 1
        self.set_reg(0, 4, "lo")
        self.set_reg(2, 4, "hi")
        self.src.depth -= 1
        self.set_efl("f")

    def g_bswap(self, i: Insn) -> None:
        (r,) = i.ops
        if i.size == 2:
            self.set_reg(r.n, 2, "0")
            return
        self.set_reg(r.n, 4, f"int.from_bytes({self.reg(r.n)}.to_bytes(4, 'little'), 'big')")

    def _bt(self, i: Insn) -> None:
        dst, bit = i.ops
        size = i.size
        bits = size * 8
        if isinstance(bit, Imm):
            self.e(f"n = {bit.value & (bits - 1)}")
            if isinstance(dst, Mem):
                self.addr(dst)
        else:
            self.e(f"n = {self.reg(bit.n, size)}")
            if isinstance(dst, Mem):
                sign = SIGNS[size]
                self.e(
                    f"a = (({self.ea(dst)}) + ((((n ^ {sign:#x}) - {sign:#x}) >> "
                    f"{3 + (size >> 1)}) * {size})) & 0xffffffff"
                )
            self.e(f"n &= {bits - 1}")
        self.e(f"d = {self.rd_value(dst)}")
        if i.op != "bt":
            expr = {"bts": "d | (1 << n)", "btr": "d & ~(1 << n)", "btc": "d ^ (1 << n)"}[i.op]
            self.wr(dst, expr)
        if self.needed[self.idx]:
            self.set_efl(f"({self.materialize_expr()} & ~1) | ((d >> n) & 1)")
        else:
            self.fkind = None

    g_bt = g_bts = g_btr = g_btc = _bt

    def _bsf(self, i: Insn) -> None:
        dst, src = i.ops
        s = self.rd_tmp(src, "s")
        self.e(f"s = {s}", "if s:")
        expr = "(s & -s).bit_length() - 1" if i.op == "bsf" else "s.bit_length() - 1"
        self.src.depth += 1
        self.set_reg(dst.n, i.size, expr)
        self.src.depth -= 1
        self.set_flags(F.LOGIC, i.size, "s")

    g_bsf = g_bsr = _bsf

    def g_xlat(self, i: Insn) -> None:
        seg = i.seg if i.seg is not None else DS
        self.e(f"a = {self.seg_add('(ebx + (eax & 0xff)) & 0xffffffff', seg)}")
        self.used.update((0, 3))
        self.set_reg(0, 1, self.ld("a", 1))

    def g_leave(self, i: Insn) -> None:
        self.used.update((4, 5))
        self.e(f"a2 = {self.stack_addr('ebp')}", f"t = {self.ld('a2', i.size)}")
        self.set_reg(4, 4, f"(ebp + {i.size}) & 0xffffffff")
        self.set_reg(5, i.size, "t")

    def g_enter(self, i: Insn) -> None:
        frame, level = i.ops
        self.sync_call(f"cpu.h_enter({frame.value}, {level.value & 31}, {i.size})")
