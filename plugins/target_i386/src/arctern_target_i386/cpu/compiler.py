"""The region compiler's framework (see :mod:`.codegen` for the design).

Operand access (registers as locals, RAM indexed directly or through the TLB),
the lazy flags with their liveness over the region and the pending producer a
conditional jump consumes, helper calls that need the state in the CPU object,
and the control flow of a region (``pc`` dispatch, counted budget ``rem``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from arctern.cpu.translate import Source

from . import flags as F
from .decoder import CS, DS, ES, SS, Imm, Insn, Mem, Reg

#: Marks a pending INC/DEC whose CF (the carry before it) is computed only if stored.
CARRY_IN = "<cf>"
#: Marks pending flags whose first operand was not kept: only ZF, SF and PF can be read.
NO_OPERAND = "<none>"
REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
#: ``M32`` (guest RAM as native 32-bit words) reads little-endian dwords on such hosts only.
_WORDS = sys.byteorder == "little"
MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: (1 << 64) - 1}
SIGNS = {1: 0x80, 2: 0x8000, 4: 0x80000000}

#: Instructions after which a block ends (control transfer, mode or interrupt-state change).
TERMINATORS = frozenset(
    """jmp jcc call call_ind ret jmp_ind loop loope loopne jecxz int int3 int1 into iret hlt
    jmpf jmpf_ind callf callf_ind retf popf sti mov_sreg pop_sreg lseg mov_ctl lldt ltr
    invlpg clts lmsw out outs ud fpu fwait toolong wrmsr lgdt lidt""".split()
)
_WRITES_ALL = frozenset(
    "add adc sub sbb cmp and or xor test neg mul imul1 imul bsf bsr xadd".split()
)
# ... and instructions that leave some flags alone or may not write them (transparent).
_READS = frozenset(
    """jcc setcc cmov adc sbb rcl rcr pushf lahf into loope loopne daa das aaa aas aam aad
    enter lar lsl verr verw ins outs""".split()
)
_SYNCED = frozenset("enter lar lsl verr verw ins outs popf iret int int3 int1 into".split())
_DIRECT_BRANCHES = frozenset("jcc jmp loop loope loopne jecxz".split())
_STRINGS = frozenset("movs cmps stos lods scas ins outs".split())
PRIVILEGED = frozenset(
    """hlt lgdt lidt lldt ltr mov_ctl mov_from_ctl invlpg clts wbinvd rdmsr wrmsr
    lmsw""".split()
)


@dataclass(frozen=True, slots=True)
class Mode:
    """What the generated code may assume; part of the block key."""

    paging: bool
    flat: bool
    code32: bool
    cpl: int
    slow: bool
    single: bool

    @property
    def bits(self) -> int:
        return (
            self.paging
            | self.flat << 1
            | self.code32 << 2
            | self.cpl << 3
            | self.slow << 5
            | self.single << 6
        )

    @classmethod
    def from_bits(cls, bits: int) -> Mode:
        return cls(
            bool(bits & 1), bool(bits & 2), bool(bits & 4), (bits >> 3) & 3,
            bool(bits & 32), bool(bits & 64),
        )


def flag_liveness(insns: list[Insn], live_out: bool = True) -> tuple[list[bool], bool]:
    """Per instruction: are the flags it writes read later? And are flags live on entry?"""
    live = live_out
    needed = [True] * len(insns)
    for idx in range(len(insns) - 1, -1, -1):
        insn = insns[idx]
        needed[idx] = live
        op = insn.op
        if op in _READS or (op in TERMINATORS and idx != len(insns) - 1):
            live = True
        elif op in TERMINATORS and op not in _DIRECT_BRANCHES and op != "call":
            live = True
        elif op in _WRITES_ALL or (op in ("shl", "shr", "sar") and _imm_count(insn)):
            live = False
        if insn.rep and op in _STRINGS or op in _SYNCED:
            live = True
    return needed, live


def successors(last: Insn) -> tuple[int, ...] | None:
    """Addresses a block continues at, known at translation time; None: also elsewhere."""
    if last.op in ("jcc", "loop", "loope", "loopne", "jecxz"):
        return (last.target, last.next)
    if last.op in ("jmp", "call"):
        return (last.target,)
    if last.op in TERMINATORS:
        return None
    return (last.next,)


def _imm_count(insn: Insn) -> int:
    count = insn.ops[1]
    return count.value & 0x1F if isinstance(count, Imm) else 0


class CompilerBase:
    """The framework of the region compiler: emission, operands, flags, control flow.

    The instruction emitters (``g_<op>``) live in :mod:`.ops_integer` and
    :mod:`.ops_system`; :class:`.codegen.BlockCompiler` puts them together.
    """

    def __init__(self, blocks: list[tuple[int, list[Insn]]], mode: Mode) -> None:
        self.blocks = blocks
        self.block_counts = {pc: len(insns) for pc, insns in blocks}
        self.mode = mode
        self.start = blocks[0][0]
        self.fast = mode.flat and not mode.paging and not mode.slow
        #: Paging on: accesses hit the TLB maps inline (TR/TW of this privilege).
        self.paged = mode.paging and not mode.slow
        ring = 3 if mode.cpl == 3 else 0
        self.tlb_read, self.tlb_write = f"TR{ring}", f"TW{ring}"
        self.src = Source()
        self.used: set[int] = set()
        self.written: set[int] = set()
        self.flags_touched = False
        self.flags_written = False
        self.stores = False
        self.stores_any = False
        last = blocks[0][1][-1]
        #: A region of several blocks, or a block looping on itself: count executed
        #: instructions at run time (``ic``) instead of using the static block length.
        self.counted = len(blocks) > 1 or (
            last.op in _DIRECT_BRANCHES and last.target == self.start
        )
        self.fkind: tuple[int, int] | None = None
        self.pending: tuple[int, int, str, str, str] | None = None
        self.block_pc = self.start
        self.self_loop = False
        self.base_depth = 3
        self.insns: list[Insn] = blocks[0][1]
        self.needed: list[bool] = []
        self.cur: Insn = self.insns[0]
        self.idx = 0
        self.count = len(self.insns)
        self.next_block: int | None = None
        #: For every instruction, in emission order: its index within its basic block.
        self.offsets: list[int] = []

    # --- emission helpers -------------------------------------------------------

    def e(self, *lines: str) -> None:
        self.src.emit(*lines)

    def reg(self, n: int, size: int = 4) -> str:
        if size == 1:
            self.used.add(n & 3)
            name = REGS[n & 3]
            return f"({name} & 0xff)" if n < 4 else f"(({name} >> 8) & 0xff)"
        self.used.add(n)
        if size == 2:
            return f"({REGS[n]} & 0xffff)"
        return REGS[n]

    def set_reg(self, n: int, size: int, expr: str) -> None:
        if size == 1:
            n4 = n & 3
            self.used.add(n4)
            self.written.add(n4)
            name = REGS[n4]
            if n < 4:
                self.e(f"{name} = ({name} & 0xffffff00) | ({expr})")
            else:
                self.e(f"{name} = ({name} & 0xffff00ff) | ({expr}) << 8")
            return
        self.used.add(n)
        self.written.add(n)
        name = REGS[n]
        if size == 2:
            self.e(f"{name} = ({name} & 0xffff0000) | ({expr})")
        else:
            self.e(f"{name} = {expr}")

    def ea(self, m: Mem, with_seg: bool = True, ram: bool = False) -> str:
        """Linear (or, without segment, effective) address expression of ``m``.

        ``ram``: the address only indexes guest RAM directly (fast mode). A sum of
        non-negative terms then needs no wrap to 32 bits: one past 4 GiB is past
        the end of RAM too, and the IndexError sends the instruction down the slow
        path, which wraps it. A displacement of 2 GiB or more (a negative one)
        keeps the wrap.
        """
        parts = []
        if m.asize == 2:
            if m.base is not None:
                parts.append(self.reg(m.base, 2))
            if m.index is not None:
                parts.append(self.reg(m.index, 2))
            if m.disp:
                parts.append(f"{m.disp:#x}")
            expr = f"({' + '.join(parts) or '0'}) & 0xffff"
        else:
            if m.base is not None:
                parts.append(self.reg(m.base))
            if m.index is not None:
                parts.append(self.reg(m.index) + (f" * {m.scale}" if m.scale > 1 else ""))
            if m.disp:
                parts.append(f"{m.disp:#x}")
            if not parts:
                return self.seg_add("0", m.seg) if with_seg else "0"
            expr = " + ".join(parts)
            wraps = not (ram and self.fast and m.disp < 0x80000000)
            if (len(parts) > 1 or m.index is not None) and wraps:
                expr = f"({expr}) & 0xffffffff"
        return self.seg_add(expr, m.seg) if with_seg else expr

    def seg_add(self, expr: str, seg: int) -> str:
        if self.mode.flat and seg in (ES, CS, SS, DS):
            return expr
        return f"(({expr}) + SB[{seg}]) & 0xffffffff"

    def addr(self, m: Mem, var: str = "a") -> str:
        self.e(f"{var} = {self.ea(m, ram=True)}")
        return var

    def ld(self, a: str, size: int) -> str:
        if self.paged:
            phys = f"pg | ({a} & 0xfff)"
            fetch = f"data[{phys}]" if size == 1 else f"U{size * 8}(data, {phys})[0]"
            return (
                f"({fetch} if (pg := {self.tlb_read}.get({a} >> 12)) is not None and "
                f"({a} & 0xfff) <= {0x1000 - size:#x} else RD({a}, {size}))"
            )
        if not self.fast:
            return f"RD({a}, {size})"
        if size == 1:
            return f"data[{a}]"
        return f"U{size * 8}(data, {a})[0]"

    def ld_ea(self, m: Mem, size: int) -> str:
        """Load expression for operand ``m`` whose address nothing else needs.

        In the fast mode, a dword at ``[index*4 + disp]`` with ``disp`` a multiple of 4
        (an array of ints indexed by a register, as gcc builds ``table[i]``) is always
        aligned: one subscript of the RAM's word view instead of a struct call.
        """
        if (
            size == 4 and _WORDS and self.fast and m.asize == 4 and m.base is None
            and m.index is not None and m.scale == 4 and m.disp % 4 == 0
            and m.disp < 0x80000000 and m.seg in (ES, CS, SS, DS)
        ):
            word = m.disp >> 2
            return f"M32[{self.reg(m.index)} + {word:#x}]" if word else f"M32[{self.reg(m.index)}]"
        return self.ld(self.ea(m, ram=True), size)

    def st(self, a: str, size: int, v: str, last: bool = False) -> None:
        """Store ``v`` at ``a``. ``last``: nothing of the instruction follows the store, so
        overwritten code can end the block right here (no ``smc`` flag to test later)."""
        if last and self.fast:
            self.e(f"data[{a}] = {v}" if size == 1 else f"P{size * 8}(data, {a}, {v})")
            self.e(f"p = {a} >> 12", "dirty[p] = 1")
            tail = "" if size == 1 else f" or ({a} & 0xfff) > {0x1000 - size:#x}"
            self.e(f"if (code[p]{tail}) and WT({a}, {size}):")
            self.e("    raise CodeModified")
            return
        self.stores = True
        if self.paged:
            self.e(
                f"if (pg := {self.tlb_write}.get({a} >> 12)) is not None and "
                f"({a} & 0xfff) <= {0x1000 - size:#x}:"
            )
            self.src.depth += 1
            self.e(f"pg |= {a} & 0xfff")
            self.e(f"data[pg] = {v}" if size == 1 else f"P{size * 8}(data, pg, {v})")
            self.e("p = pg >> 12", "dirty[p] = 1", f"if code[p]: smc = WT(pg, {size}) or smc")
            self.src.depth -= 1
            self.e("else:")
            self.e(f"    if WR({a}, {size}, {v}): smc = True")
            return
        if not self.fast:
            self.e(f"if WR({a}, {size}, {v}): smc = True")
            return
        if size == 1:
            self.e(f"data[{a}] = {v}")
        else:
            self.e(f"P{size * 8}(data, {a}, {v})")
        self.e(f"p = {a} >> 12", "dirty[p] = 1")
        if size == 1:
            self.e(f"if code[p]: smc = WT({a}, 1) or smc")
        else:
            self.e(
                f"if code[p] or ({a} & 0xfff) > {0x1000 - size:#x}: "
                f"smc = WT({a}, {size}) or smc"
            )

    def rd(self, op, size: int | None = None, var: str = "a") -> str:
        """Expression reading operand ``op`` (memory: emits the address into ``var``)."""
        if isinstance(op, Reg):
            return self.reg(op.n, size or op.size)
        if isinstance(op, Imm):
            return f"{op.value:#x}"
        if isinstance(op, Mem):
            return self.ld(self.addr(op, var), size or op.size)
        raise TypeError(op)

    def rd_tmp(self, op, var: str, size: int | None = None) -> str:
        """Like :meth:`rd` but memory values land in local ``var`` (evaluated once)."""
        if isinstance(op, Mem):
            self.e(f"{var} = {self.rd(op, size)}")
            return var
        return self.rd(op, size)

    def wr(self, op, expr: str, a: str = "a") -> None:
        if isinstance(op, Reg):
            self.set_reg(op.n, op.size, expr)
        else:
            self.st(a, op.size, expr)

    # --- stack ---------------------------------------------------------------

    def stack_addr(self, expr: str) -> str:
        return self.seg_add(expr, SS)

    def push(self, value: str, size: int) -> None:
        """Push ``value`` (evaluated before ESP changes)."""
        self.e(f"v = {value}", f"sp = (esp - {size}) & 0xffffffff")
        self.used.add(4)
        self.e(f"a2 = {self.stack_addr('sp')}")
        self.st("a2", size, "v")
        self.set_reg(4, 4, "sp")

    def pop_value(self, size: int, var: str = "v") -> None:
        """Load the top of stack into ``var``; ESP is updated by :meth:`pop_commit`."""
        self.used.add(4)
        self.e(f"a2 = {self.stack_addr('esp')}")
        self.e(f"{var} = {self.ld('a2', size)}")

    def pop_commit(self, size: int) -> None:
        self.set_reg(4, 4, f"(esp + {size}) & 0xffffffff")

    # --- flags ------------------------------------------------------------------

    def set_flags(self, kind: int, size: int, r: str, a: str = "0", b: str = "0") -> None:
        """The instruction produced flags (r, a, b are expressions valid until the next one).

        They stay *pending* (not stored) while only a condition consumer follows, so
        ``cmp; jcc`` compiles to one comparison; :meth:`flush` stores them otherwise.
        """
        self.pending = None
        if not self.needed[self.idx]:
            self.fkind = None
            return
        self.touch_flags(write=True)
        self.pending = (kind, size, r, a, b)
        self.fkind = (kind, size)
        if self.src.depth != self.base_depth:  # inside a conditional: store now
            self.flush()

    def emit_pending(self) -> None:
        """Store pending flags into the flag locals (without forgetting them)."""
        if self.pending is None:
            return
        kind, size, r, a, b = self.pending
        if a == NO_OPERAND:
            raise AssertionError("flags without their operand cannot be stored")
        if b == CARRY_IN:
            self.carry()
            b = "c"
        self.e(f"fo = {F.op_code(kind, size)}; fr = {r}; fa = {a}; fb = {b}")

    def flush(self) -> None:
        self.emit_pending()
        self.pending = None

    def touch_flags(self, write: bool = False) -> None:
        self.flags_touched = True
        if write:
            self.flags_written = True

    def cond(self, cc: int) -> str:
        self.touch_flags()
        if self.pending is not None:
            kind, size, r, a, b = self.pending
            if a == NO_OPERAND:
                return F.cond_static(cc, F.LOGIC, size, r)  # ZF/SF/PF: from the result alone
            if b != CARRY_IN or cc >> 1 in (2, 4, 5):
                expr = F.cond_static(cc, kind, size, r, a, b)
                if expr is not None:
                    return expr
            self.flush()
        if self.fkind is not None:
            expr = F.cond_static(cc, *self.fkind)
            if expr is not None:
                return expr
        self.e(f"f = {self.materialize_expr()}")
        return F.cond_on_flags(cc)

    def materialize_expr(self) -> str:
        self.flush()
        self.touch_flags()
        if self.fkind is not None and self.fkind[0] == F.EFL:
            return "fr"
        if self.fkind is not None and self.fkind[0] == F.LOGIC:
            sign = SIGNS[self.fkind[1]]
            zero_sign = f"(0x40 if fr == 0 else 0) | (0x80 if fr & {sign:#x} else 0)"
            return f"(PARITY[fr & 0xff] | {zero_sign})"
        return "FL[fo](fr, fa, fb)"

    def carry(self) -> str:
        """Emit ``c = CF`` (from the flag locals)."""
        if self.pending is not None and self.pending[4] != CARRY_IN:
            self.flush()
        self.touch_flags()
        kind = self.fkind if self.pending is None else None
        if kind is not None and kind[0] == F.SUB:
            self.e("c = 1 if fa < fb else 0")
        elif kind is not None and kind[0] == F.ADD:
            self.e("c = 1 if fr < fa else 0")
        elif kind is not None and kind[0] == F.LOGIC:
            self.e("c = 0")
        elif kind is not None and kind[0] == F.EFL:
            self.e("c = fr & 1")
        else:
            self.e("c = FL[fo](fr, fa, fb) & 1")
        return "c"

    def set_efl(self, expr: str) -> None:
        """Flags are now the materialized value ``expr``."""
        self.flush()
        self.touch_flags(write=True)
        self.e(f"fr = {expr}; fo = 0")
        self.fkind = (F.EFL, 4)

    # --- helper calls with the whole state in the CPU object ------------------

    def sync_call(self, call: str) -> None:
        """Write state back, run ``call`` (which may read/modify ``cpu``), reload the state."""
        self.flush()
        self.used.update(range(8))
        self.written.update(range(8))
        self.touch_flags(write=True)
        self.fkind = None
        self.e("#SYNC#", "try:")
        self.src.depth += 1
        self.e(call)
        self.src.depth -= 1
        self.e("finally:")
        self.src.depth += 1
        self.e("#RELOAD#")
        self.src.depth -= 1

    def fault(self, vector: int, code: int | None = None) -> None:
        self.e(f"raise Fault({vector}, {code})")

    # --- block ---------------------------------------------------------------

    def compile(self) -> tuple[str, list[int], bool]:
        """Return (source, first line of each instruction, whether execution is counted)."""
        body = self.src
        self.live_in = self._region_liveness()
        for k, (pc, insns) in enumerate(self.blocks):
            self.insns, self.count = insns, len(insns)
            self.needed, _ = flag_liveness(insns, self.live_out[pc])
            self.fkind = None
            self.pending = None
            self.block_pc = pc
            self.next_block = self.blocks[k + 1][0] if k + 1 < len(self.blocks) else None
            last = insns[-1]
            self.self_loop = last.op in _DIRECT_BRANCHES and last.target == pc
            body.depth = 3
            if self.counted:
                self.e(f"if pc == {pc:#x}:")
                body.depth = 4
                if self.self_loop:
                    # the range holds the budget: each pass takes the next value of
                    # ``rem`` (the budget before this pass), while the block still fits
                    n = len(insns)
                    self.e(f"for rem in range(rem, {n - 1}, -{n}):")
                    body.depth = 5
            self.base_depth = body.depth
            self._compile_block(insns)
            if self.counted and self.self_loop:
                body.depth = 4
                self.e("else:", f"    rem -= {len(insns)}", f"    return {pc:#x}")
        if self.counted:
            body.depth = 3
            self.e("return pc")
        return self._assemble()

    def _region_liveness(self) -> dict[int, bool]:
        """Flags live on entry to each block, over the region's control flow."""
        live_in = {pc: False for pc, _ in self.blocks}
        self.live_out: dict[int, bool] = {}
        changed = True
        while changed:
            changed = False
            for pc, insns in self.blocks:
                succ = successors(insns[-1])
                out = succ is None or any(live_in.get(t, True) for t in succ)
                self.live_out[pc] = out
                _, live = flag_liveness(insns, out)
                if live != live_in[pc]:
                    live_in[pc] = live
                    changed = True
        return live_in

    def _compile_block(self, insns: list[Insn]) -> None:
        ended = False
        for idx, insn in enumerate(insns):
            self.idx = idx
            self.cur = insn
            self.offsets.append(idx)
            if self.pending is not None and not self._consumes_pending(insn):
                self.flush()
            self.src.mark()
            if insn.op in PRIVILEGED and self.mode.cpl:
                self.fault(13, 0)
                ended = True
                break
            getattr(self, "g_" + insn.op)(insn)
            if self.stores:
                self.e("if smc:")
                self.src.depth += 1
                self.emit_pending()
                self.e("raise CodeModified")
                self.src.depth -= 1
            self.stores_any = self.stores_any or self.stores
            self.stores = False
            if insn.op in TERMINATORS:
                ended = True
        if not ended:
            self.jump(insns[-1].next, tail=True)

    def _consumes_pending(self, insn: Insn) -> bool:
        """Instructions that read pending flags without disturbing their expressions."""
        if insn.op == "jcc":
            return True
        if insn.op == "setcc":
            return isinstance(insn.ops[0], Reg) and not self.needed[self.idx]
        if insn.op == "cmov":
            return isinstance(insn.ops[1], Reg) and not self.needed[self.idx]
        return False

    def _assemble(self) -> tuple[str, list[int], bool]:
        used = sorted(self.used | self.written)
        written = sorted(self.written)
        flags = self.flags_touched or self.flags_written
        head = ["def tb(lim, pc):"]
        head += [f"    {REGS[n]} = R[{n}]" for n in used]
        if flags:
            head.append("    fo, fr, fa, fb = cpu.fl")
        if self.stores_any:
            head.append("    smc = False")
        if self.counted:
            head.append("    rem = lim")
        back = [f"R[{n}] = {REGS[n]}" for n in written]
        if self.flags_written:
            back.append("cpu.fl = (fo, fr, fa, fb)")
        reload = [f"{REGS[n]} = R[{n}]" for n in used]
        if flags:
            reload.append("fo, fr, fa, fb = cpu.fl")
        head.append("    try:")
        head.append("        while True:" if self.counted else "        if True:")
        offset = len(head)
        lines = []
        for line in self.src.lines:
            stripped = line.strip()
            pad = line[: len(line) - len(line.lstrip())]
            if stripped == "#SYNC#":
                lines.append(pad + ("; ".join(back) or "pass"))
            elif stripped == "#RELOAD#":
                lines.append(pad + ("; ".join(reload) or "pass"))
            else:
                lines.append(line)
        if self.counted:
            back.append("cpu.loopn = lim - rem")
        tail = ["    finally:"] + ["        " + line for line in back or ["pass"]]
        src = "\n".join(head + lines + tail) + "\n"
        marks = [m + offset for m in self.src.marks]
        return src, marks, self.counted

    # --- control transfer -----------------------------------------------------

    def exit(self, target: str | int) -> None:
        """Leave the translated code for ``target`` (an address or an expression)."""
        self.emit_pending()
        if self.counted:
            self.e(f"rem -= {self.count}")
        self.e(f"return {target:#x}" if isinstance(target, int) else f"return {target}")

    def jump(self, target: str | int, tail: bool = False) -> None:
        """Continue at ``target``: inside the region when it is one of its blocks.

        ``tail``: this is the last statement of the block, so a jump to the block
        emitted next needs no ``continue``.
        """
        if not (self.counted and isinstance(target, int) and target in self.block_counts):
            self.exit(target)
            return
        if self.live_in[target]:
            self.emit_pending()
        if target == self.block_pc and self.self_loop:
            self.e("continue")
            return
        self.e(f"rem -= {self.count}")
        self.e(f"if rem < {self.block_counts[target]}: return {target:#x}")
        self.e(f"pc = {target:#x}")
        if self.self_loop:
            self.e("break")
        elif not (tail and target == self.next_block):
            self.e("continue")

    def branch(self, cond: str, target: int, fallthrough: int) -> None:
        self.e(f"if {cond}:")
        self.src.depth += 1
        self.jump(target)
        self.src.depth -= 1
        self.jump(fallthrough, tail=True)
