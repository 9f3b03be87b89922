"""Emitters of string instructions, port I/O and the system instructions (interrupts,
far transfers, segment, descriptor-table and control registers, CPUID, MSRs, BCD)."""

from __future__ import annotations

from . import flags as F
from .compiler import MASKS, CompilerBase
from .decoder import DS, ES, Insn, Mem


class SystemOps(CompilerBase):
    # --- string instructions ----------------------------------------------------

    def _string(self, i: Insn) -> None:
        if i.rep or i.asize != 4 or i.op in ("ins", "outs") or not self.fast:
            seg = i.seg if i.seg is not None else DS
            self.sync_call(f"cpu.h_string({i.op!r}, {i.size}, {seg}, {i.rep!r}, {i.asize})")
            if i.op == "outs":
                self.exit(i.next)
            return
        size = i.size
        m = MASKS[size]
        seg = i.seg if i.seg is not None else DS
        self.e(f"k = -{size} if cpu.eflags & 0x400 else {size}")
        self.used.update((0, 6, 7))
        src_addr = self.seg_add("esi", seg)
        dst_addr = self.seg_add("edi", ES)
        op = i.op
        if op == "movs":
            self.e(f"a = {src_addr}", f"t = {self.ld('a', size)}", f"a2 = {dst_addr}")
            self.st("a2", size, "t")
            self.set_reg(6, 4, "(esi + k) & 0xffffffff")
            self.set_reg(7, 4, "(edi + k) & 0xffffffff")
        elif op == "stos":
            self.e(f"a2 = {dst_addr}")
            self.st("a2", size, self.reg(0, size))
            self.set_reg(7, 4, "(edi + k) & 0xffffffff")
        elif op == "lods":
            self.e(f"a = {src_addr}")
            self.set_reg(0, size, self.ld("a", size))
            self.set_reg(6, 4, "(esi + k) & 0xffffffff")
        elif op == "scas":
            self.e(f"a2 = {dst_addr}", f"t = {self.ld('a2', size)}", f"x = {self.reg(0, size)}")
            self.set_reg(7, 4, "(edi + k) & 0xffffffff")
            self.set_flags(F.SUB, size, f"(x - t) & {m:#x}", "x", "t")
        elif op == "cmps":
            self.e(f"a = {src_addr}", f"x = {self.ld('a', size)}")
            self.e(f"a2 = {dst_addr}", f"t = {self.ld('a2', size)}")
            self.set_reg(6, 4, "(esi + k) & 0xffffffff")
            self.set_reg(7, 4, "(edi + k) & 0xffffffff")
            self.needed[self.idx] = True
            self.set_flags(F.SUB, size, f"(x - t) & {m:#x}", "x", "t")

    g_movs = g_cmps = g_stos = g_lods = g_scas = g_ins = g_outs = _string

    # --- I/O, system -----------------------------------------------------------

    def io_check(self) -> None:
        if self.mode.cpl:
            self.e(f"if {self.mode.cpl} > (cpu.eflags >> 12) & 3: raise Fault(13, 0)")

    def g_in(self, i: Insn) -> None:
        dst, port = i.ops
        self.io_check()
        self.set_reg(0, i.size, f"IO_R({self.rd(port)}, {i.size})")

    def g_out(self, i: Insn) -> None:
        port, src = i.ops
        self.io_check()
        self.e(f"IO_W({self.rd(port)}, {i.size}, {self.reg(0, i.size)})")
        self.exit(i.next)

    def g_cpuid(self, i: Insn) -> None:
        self.used.update((0, 1))
        self.e("t = cpu.cpuid(eax, ecx)")
        for n, k in ((0, 0), (3, 1), (1, 2), (2, 3)):
            self.set_reg(n, 4, f"t[{k}]")

    def g_rdtsc(self, i: Insn) -> None:
        self.e("t = cpu.rdtsc()")
        self.set_reg(0, 4, "t & 0xffffffff")
        self.set_reg(2, 4, "(t >> 32) & 0xffffffff")

    def g_rdmsr(self, i: Insn) -> None:
        self.e(f"t = cpu.rdmsr({self.reg(1)})")
        self.set_reg(0, 4, "t & 0xffffffff")
        self.set_reg(2, 4, "(t >> 32) & 0xffffffff")

    def g_wrmsr(self, i: Insn) -> None:
        self.e(f"cpu.wrmsr({self.reg(1)}, ({self.reg(2)} << 32) | {self.reg(0)})")
        self.exit(i.next)

    def g_wbinvd(self, i: Insn) -> None:
        self.e("pass")

    def _int_common(self, vector: str, i: Insn) -> None:
        self.sync_call(f"cpu.h_int({vector}, {i.next:#x})")
        self.exit("cpu.eip")

    def g_int(self, i: Insn) -> None:
        self._int_common(str(i.ops[0].value), i)

    def g_int3(self, i: Insn) -> None:
        self._int_common("3", i)

    def g_int1(self, i: Insn) -> None:
        self._int_common("1", i)

    def g_into(self, i: Insn) -> None:
        self.e(f"if {self.cond(0)}:")
        self.src.depth += 1
        self._int_common("4", i)
        self.src.depth -= 1
        self.exit(i.next)

    def _sys(self, call: str, i: Insn, end: bool = True) -> None:
        self.sync_call(call)
        if end:
            self.exit("cpu.eip")

    def g_iret(self, i: Insn) -> None:
        self._sys(f"cpu.h_iret({i.size})", i)

    def g_retf(self, i: Insn) -> None:
        self._sys(f"cpu.h_retf({i.size}, {i.ops[0].value})", i)

    def g_jmpf(self, i: Insn) -> None:
        sel, off = i.far
        self._sys(f"cpu.h_far_jump({sel:#x}, {off:#x}, {i.next:#x}, False, {i.size})", i)

    def g_callf(self, i: Insn) -> None:
        sel, off = i.far
        self._sys(f"cpu.h_far_jump({sel:#x}, {off:#x}, {i.next:#x}, True, {i.size})", i)

    def _far_ind(self, i: Insn) -> None:
        (m,) = i.ops
        self.addr(m)
        self.e(f"t = {self.ld('a', i.size)}", f"a2 = (a + {i.size}) & 0xffffffff")
        self.e(f"s = {self.ld('a2', 2)}")
        call = i.op == "callf_ind"
        self._sys(f"cpu.h_far_jump(s, t, {i.next:#x}, {call}, {i.size})", i)

    g_jmpf_ind = g_callf_ind = _far_ind

    def g_mov_sreg(self, i: Insn) -> None:
        sreg, src = i.ops
        self.e(f"t = {self.rd(src, 2)}")
        self.sync_call(f"cpu.h_load_seg({sreg.n}, t)")
        self.exit(i.next)

    def g_mov_from_sreg(self, i: Insn) -> None:
        dst, sreg = i.ops
        if isinstance(dst, Mem):
            self.addr(dst)
        self.wr(dst, f"cpu.sel[{sreg.n}]")

    def g_push_sreg(self, i: Insn) -> None:
        self.push(f"cpu.sel[{i.ops[0].n}]", i.size)

    def g_pop_sreg(self, i: Insn) -> None:
        self.pop_value(i.size, "t")
        self.e("t &= 0xffff")
        self.sync_call(f"cpu.h_load_seg({i.ops[0].n}, t, {i.size})")
        self.exit(i.next)

    def g_lseg(self, i: Insn) -> None:
        sreg, dst, m = i.ops
        self.addr(m)
        self.e(f"t = {self.ld('a', i.size)}", f"a2 = (a + {i.size}) & 0xffffffff")
        self.e(f"s = {self.ld('a2', 2)}")
        self.sync_call(f"cpu.h_load_seg({sreg.n}, s)")
        self.set_reg(dst.n, i.size, "t")
        self.exit(i.next)

    def _dtr(self, i: Insn) -> None:
        (m,) = i.ops
        self.addr(m)
        table = "gdt" if i.op in ("lgdt", "sgdt") else "idt"
        if i.op.startswith("l"):
            self.e(f"t = {self.ld('a', 2)}", "a2 = (a + 2) & 0xffffffff")
            self.e(f"s = {self.ld('a2', 4)}")
            if i.size == 2:
                self.e("s &= 0xffffff")
            self.e(f"cpu.{table} = [s, t]")
            self.exit(i.next)
        else:
            self.st("a", 2, f"cpu.{table}[1]")
            self.e("a2 = (a + 2) & 0xffffffff")
            base_mask = 0xFFFFFF if i.size == 2 else 0xFFFFFFFF  # 16-bit form: 24-bit base
            self.st("a2", 4, f"cpu.{table}[0] & {base_mask:#x}")

    g_lgdt = g_lidt = g_sgdt = g_sidt = _dtr

    def g_lldt(self, i: Insn) -> None:
        self.e(f"t = {self.rd(i.ops[0], 2)}")
        self._sys("cpu.h_lldt(t)", i, end=False)
        self.exit(i.next)

    def g_ltr(self, i: Insn) -> None:
        self.e(f"t = {self.rd(i.ops[0], 2)}")
        self._sys("cpu.h_ltr(t)", i, end=False)
        self.exit(i.next)

    def _store_sel(self, i: Insn, expr: str) -> None:
        (dst,) = i.ops
        if isinstance(dst, Mem):
            self.addr(dst)
            self.st("a", 2, expr)
        else:
            self.set_reg(dst.n, dst.size, expr)

    def g_sldt(self, i: Insn) -> None:
        self._store_sel(i, "cpu.ldtr[0]")

    def g_str(self, i: Insn) -> None:
        self._store_sel(i, "cpu.tr[0]")

    def g_smsw(self, i: Insn) -> None:
        self._store_sel(i, "cpu.cr[0] & 0xffff")

    def g_lmsw(self, i: Insn) -> None:
        self.e(f"t = {self.rd(i.ops[0], 2)}")
        self._sys("cpu.h_write_cr(0, (cpu.cr[0] & ~0xe) | (t & 0xf) | (cpu.cr[0] & 1))", i, False)
        self.exit(i.next)

    def g_mov_ctl(self, i: Insn) -> None:
        ctl, src = i.ops
        if ctl.kind == "dr":
            self.e(f"cpu.dr[{ctl.n}] = {self.reg(src.n)}")
            self.exit(i.next)
            return
        self._sys(f"cpu.h_write_cr({ctl.n}, {self.reg(src.n)})", i, end=False)
        self.exit(i.next)

    def g_mov_from_ctl(self, i: Insn) -> None:
        dst, ctl = i.ops
        self.set_reg(dst.n, 4, f"cpu.{ctl.kind}[{ctl.n}]")

    def g_invlpg(self, i: Insn) -> None:
        self.e(f"cpu.h_invlpg({self.ea(i.ops[0])})")
        self.exit(i.next)

    def g_clts(self, i: Insn) -> None:
        self.e("cpu.cr[0] &= ~8")
        self.exit(i.next)

    def _seg_check(self, i: Insn) -> None:
        dst, src = i.ops if len(i.ops) == 2 else (None, i.ops[0])
        self.e(f"t = {self.rd(src, 2)}")
        self.sync_call(f"r = cpu.h_{i.op}(t)")
        if dst is not None:
            self.e("if r is not None:")
            self.src.depth += 1
            self.set_reg(dst.n, i.size, f"r & {MASKS[i.size]:#x}")
            self.src.depth -= 1

    g_lar = g_lsl = g_verr = g_verw = _seg_check

    def _bcd(self, i: Insn) -> None:
        f = self.materialize_expr()
        arg = f", {i.ops[0].value}" if i.ops else ""
        self.e(f"t, f = H.{i.op}(eax & 0xffff, {f}{arg})")
        self.used.add(0)
        self.set_reg(0, 2, "t")
        self.set_efl("f")

    g_daa = g_das = g_aaa = g_aas = g_aam = g_aad = _bcd
