"""Translate a list of decoded instructions into the Python source of one block.

Generated code keeps guest registers and the lazy-flag quadruple (fo, fr, fa,
fb) in locals and writes them back in a ``finally`` clause. Every instruction
performs its loads and stores (the points that can fault) before it assigns
registers or flags, so a fault leaves the state of the instruction boundary
(see :mod:`arctern.cpu.translate`). Flags are only produced when a later reader
can see them (liveness over the block), and a condition after a known
producer in the same block is one Python comparison (``cmp; jl`` ->
``(fa ^ 0x80000000) < (fb ^ 0x80000000)``).

Memory in the fast mode (flat segments, paging off) indexes ``ram.data``
directly: a load past RAM raises ``struct.error``/``IndexError``, which the
CPU answers by re-running that one instruction in the "slow" mode where every
access goes through the softmmu helpers (``RD``/``WR``: MMIO, ROM, paging).
"""

from __future__ import annotations

from dataclasses import dataclass

from arctern.cpu.translate import Source

from . import flags as F
from .decoder import CS, DS, ES, SS, Imm, Insn, Mem, Reg

#: Marks a pending INC/DEC whose CF (the carry before it) is computed only if stored.
CARRY_IN = "<cf>"
#: Marks pending flags whose first operand was not kept: only ZF, SF and PF can be read.
NO_OPERAND = "<none>"
REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: (1 << 64) - 1}
SIGNS = {1: 0x80, 2: 0x8000, 4: 0x80000000}

#: Instructions after which a block ends (control transfer, mode or interrupt-state change).
TERMINATORS = frozenset(
    """jmp jcc call call_ind ret jmp_ind loop loope loopne jecxz int int3 int1 into iret hlt
    jmpf jmpf_ind callf callf_ind retf popf sti mov_sreg pop_sreg lseg mov_ctl lldt ltr
    invlpg clts lmsw out outs ud fpu fwait toolong wrmsr lgdt lidt""".split()
)
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
_WRITES_ALL = frozenset(
    "add adc sub sbb cmp and or xor test neg mul imul1 imul bsf bsr xadd".split()
)
# ... and instructions that leave some flags alone or may not write them (transparent).
_PARTIAL = frozenset(
    """inc dec rol ror shl shr sar shld shrd bt bts btr btc cmpxchg8b clc stc cmc sahf
    cmpxchg""".split()
)
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


def _same_reg(a: Reg, b: Reg) -> bool:
    """Do the two register operands share bits (AL and EAX, AH and AX, ...)?"""
    return (a.n if a.size > 1 else a.n & 3) == (b.n if b.size > 1 else b.n & 3)


def _imm_count(insn: Insn) -> int:
    count = insn.ops[1]
    return count.value & 0x1F if isinstance(count, Imm) else 0


class BlockCompiler:
    """Generates ``def tb(lim, pc): ...`` for a region: blocks entered at ``pc``."""

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

    def ea(self, m: Mem, with_seg: bool = True) -> str:
        """Linear (or, without segment, effective) address expression of ``m``."""
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
            if len(parts) > 1 or m.index is not None:
                expr = f"({expr}) & 0xffffffff"
        return self.seg_add(expr, m.seg) if with_seg else expr

    def seg_add(self, expr: str, seg: int) -> str:
        if self.mode.flat and seg in (ES, CS, SS, DS):
            return expr
        return f"({expr} + SB[{seg}]) & 0xffffffff"

    def addr(self, m: Mem, var: str = "a") -> str:
        self.e(f"{var} = {self.ea(m)}")
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
                    self.e("while True:")
                    body.depth = 5
            self.base_depth = body.depth
            self._compile_block(insns)
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
        self.e(f"rem -= {self.count}")
        self.e(f"if rem < {self.block_counts[target]}: return {target:#x}")
        if target == self.block_pc and self.self_loop:
            self.e("continue")
            return
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

    # --- instructions -----------------------------------------------------------

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
            self.set_reg(dst.n, dst.size, self.ld(self.ea(src), src.size))
        elif src != dst:
            self.set_reg(dst.n, dst.size, self.rd(src))

    def g_movzx(self, i: Insn) -> None:
        dst, src = i.ops
        if isinstance(src, Mem) and self.fast:
            self.set_reg(dst.n, dst.size, self.ld(self.ea(src), src.size))
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
            s = f"{self.ld(self.ea(src), src.size)}" if self.fast else self.rd_tmp(src, "s")
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
                    f"a = ({self.ea(dst)} + ((((n ^ {sign:#x}) - {sign:#x}) >> "
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
