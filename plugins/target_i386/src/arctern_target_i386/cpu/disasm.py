"""Intel-syntax text of decoded instructions, for ``-d in_asm``."""

from __future__ import annotations

from .decoder import REG_NAMES, SEG_NAMES, Ctl, Imm, Insn, Mem, Reg, SReg
from .flags import COND_NAMES

_PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
#: Internal operation names that are not the instruction's mnemonic.
_MNEMONICS = {
    "mov_sreg": "mov", "mov_from_sreg": "mov", "mov_ctl": "mov", "mov_from_ctl": "mov",
    "push_sreg": "push", "pop_sreg": "pop", "call_ind": "call", "jmp_ind": "jmp",
    "jmpf": "ljmp", "jmpf_ind": "ljmp", "callf": "lcall", "callf_ind": "lcall", "imul1": "imul",
    "toolong": "(bad)", "ud": "(bad)", "fpu": "(x87)",
}


def operand_text(op) -> str:
    if isinstance(op, Reg):
        return REG_NAMES[op.size][op.n]
    if isinstance(op, Imm):
        return f"{op.value:#x}"
    if isinstance(op, SReg):
        return SEG_NAMES[op.n]
    if isinstance(op, Ctl):
        return f"{op.kind}{op.n}"
    if isinstance(op, Mem):
        names = REG_NAMES[op.asize]
        parts = []
        if op.base is not None:
            parts.append(names[op.base])
        if op.index is not None:
            parts.append(names[op.index] + (f"*{op.scale}" if op.scale > 1 else ""))
        if op.disp or not parts:
            disp = op.disp if op.disp < 0x80000000 else op.disp - (1 << 32)
            parts.append(f"{disp:#x}" if not parts or disp >= 0 else f"-{-disp:#x}")
        text = "+".join(parts).replace("+-", "-")
        return f"{_PTR.get(op.size, '')} ptr {SEG_NAMES[op.seg]}:[{text}]"
    return "?"


def insn_text(insn: Insn) -> str:
    name = _MNEMONICS.get(insn.op, insn.op)
    if name in ("jcc", "setcc", "cmov"):
        name = {"jcc": "j", "setcc": "set", "cmov": "cmov"}[name] + COND_NAMES[insn.cc]
    if insn.rep:
        name = f"{insn.rep} {name}"
    if insn.lock:
        name = "lock " + name
    ops = [operand_text(op) for op in insn.ops]
    if insn.target is not None:
        ops.append(f"{insn.target:#x}")
    if insn.far is not None:
        ops.append(f"{insn.far[0]:#x}:{insn.far[1]:#x}")
    text = f"{name} {', '.join(ops)}".rstrip()
    return f"{insn.addr:#010x}:  {insn.code.hex(' '):<30} {text}"
