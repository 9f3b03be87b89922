"""The i386 CPU model: state, the run loop, translation of blocks, migration state."""

from __future__ import annotations

import logging
import struct
from typing import Any

from arctern.cpu import trace
from arctern.cpu.base import CPU
from arctern.cpu.softmmu import TLB, PhysicalMemory
from arctern.cpu.tbcache import BlockCache, TranslatedBlock
from arctern.cpu.translate import CodeModified, compile_block, fault_index
from arctern.errors import MachineError

from . import helpers
from .codegen import TERMINATORS, BlockCompiler, Mode, successors
from .decoder import CS, DS, ES, FS, GS, SS, NeedBytes, decode
from .disasm import insn_text
from .faults import Fault
from .flags import ARITH, FLAGS, IF, PARITY, TF
from .mmu import CR0_PE, CR0_PG, LinearMemory
from .strings import RepYield, StringMixin
from .system import CPUID_FEATURES, FLAT_CODE, FLAT_DATA, SystemMixin

log = logging.getLogger(__name__)

MAX_BLOCK_INSNS = 64
MAX_REGION_BLOCKS = 8
MAX_REGION_INSNS = 128
_SLOW = 1 << 5
_SINGLE = 1 << 6
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


class I386CPU(SystemMixin, LinearMemory, StringMixin, CPU):
    """A 32-bit x86 (i686 integer instruction set) translating Python code per guest block."""

    name = "qemu32"
    arch = "i386"
    description = "QEMU Virtual CPU (i686 integer core, no x87/SSE)"
    model_id = "QEMU Virtual CPU version 2.5+"
    #: CPUID leaf 1: family/model/stepping (QEMU's qemu32: 6/6/3) and the EDX features.
    cpuid_signature = 0x663
    cpuid_features = CPUID_FEATURES

    def __init__(self, machine) -> None:
        super().__init__(machine)
        self.ram = machine.ram
        self.cache = BlockCache(self.ram)
        self.phys = PhysicalMemory(machine.address_space, self.cache)
        self.tlb = TLB()
        self.r = [0] * 8
        self.fl: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.sel = [0] * 6
        self.segbase = [0] * 6
        self.seglimit = [0] * 6
        self.segflags = [0] * 6
        self.cr = [0] * 5
        self.dr = [0] * 8
        #: Interrupt controller callback returning the vector of the interrupt being taken.
        self.irq_ack = None
        self.irq_level = False
        #: When True, run() executes one instruction per block (debugging, tests).
        self.single_step = False
        #: Instruction-count mode: run(n) retires exactly n instructions unless the CPU
        #: halts or the machine stops it; otherwise a slice may end up to one block
        #: early instead of translating the code again in smaller pieces.
        self.exact_budget = False
        self.loopn = 0
        self._fast_ram = self.ram.base == 0
        self._namespace = self._make_namespace()
        self.reset()

    def _make_namespace(self) -> dict[str, Any]:
        ram = self.ram
        io = self.machine.io
        return {
            "cpu": self, "R": self.r, "data": ram.data, "dirty": ram.dirty, "code": ram.code,
            "M32": ram.view.cast("I"),
            "U16": _U16.unpack_from, "U32": _U32.unpack_from,
            "P16": _U16.pack_into, "P32": _U32.pack_into,
            "WT": self.phys.stored, "RD": self.read_lin, "WR": self.write_lin,
            "FL": FLAGS, "PARITY": PARITY, "Fault": Fault, "CodeModified": CodeModified,
            "SB": self.segbase, "H": helpers, "IO_R": io.read, "IO_W": io.write,
            "TR0": self.tlb.maps[0][0], "TW0": self.tlb.maps[0][1],
            "TR3": self.tlb.maps[1][0], "TW3": self.tlb.maps[1][1],
        }

    # --- architectural state -------------------------------------------------------

    def reset(self) -> None:
        """Power-on state: real mode at F000:FFF0 (run() needs protected mode)."""
        self.r[:] = [0, 0, self.cpuid_signature, 0, 0, 0, 0, 0]
        self.eip = 0xFFF0
        self.eflags = 2
        self.fl = (0, 0, 0, 0)
        self.cr[:] = [0x60000010, 0, 0, 0, 0]
        self.dr[:] = [0] * 6 + [0xFFFF0FF0, 0x400]
        self.cpl = 0
        self.gdt = [0, 0xFFFF]
        self.idt = [0, 0xFFFF]
        self.ldtr = [0, 0, 0xFFFF, 0x8200]
        self.tr = [0, 0, 0xFFFF, 0x8B00]
        for seg in range(6):
            self.sel[seg], self.segbase[seg] = 0, 0
            self.seglimit[seg], self.segflags[seg] = 0xFFFF, 0x9300
        self.sel[CS], self.segbase[CS], self.segflags[CS] = 0xF000, 0xFFFF0000, 0x9B00
        self.msr = {"sysenter_cs": 0, "sysenter_esp": 0, "sysenter_eip": 0, "apic_base": 0xFEE00900}
        self.tsc_offset = 0
        self.halted = False
        self.shutdown = False
        self.inhibit = False
        self.icount = 0
        self.tlb.flush()
        self.cache.flush()
        self.update_mode()

    def enter_flat_protected_mode(self, eip: int, eax: int, ebx: int) -> None:
        """The state a Multiboot loader leaves: flat 4 GiB segments, PE=1, paging off, IF=0."""
        self.cr[0] = (self.cr[0] | CR0_PE) & ~CR0_PG & 0xFFFFFFFF
        self.cpl = 0
        for seg in (ES, SS, DS, FS, GS):  # QEMU's multiboot loader: code 0x08, data 0x10
            self.set_segment(seg, 0x10, 0, 0xFFFFFFFF, FLAT_DATA)
        self.set_segment(CS, 0x08, 0, 0xFFFFFFFF, FLAT_CODE)
        self.set_eflags(2)
        self.r[0], self.r[3] = eax & 0xFFFFFFFF, ebx & 0xFFFFFFFF
        self.eip = eip & 0xFFFFFFFF
        self.halted = False
        self.tlb.flush()
        self.update_mode()

    def update_mode(self) -> None:
        """Recompute the mode flags that select (and key) translated code."""
        base = self.segbase
        flat = not (base[ES] or base[CS] or base[SS] or base[DS])
        mode = Mode(
            paging=bool(self.cr[0] & CR0_PG),
            flat=flat,
            code32=bool(self.segflags[CS] & 0x400000) or not self.cr[0] & CR0_PE,
            cpl=self.cpl,
            slow=not self._fast_ram,
            single=bool(self.single_step or self.eflags & TF),
        )
        self.mode = mode
        self.mode_key = mode.bits << 32
        self._key_is_eip = flat and not mode.paging

    def set_irq(self, level: bool) -> None:
        self.irq_level = bool(level)

    def get_state(self) -> dict[str, Any]:
        return {
            "regs": list(self.r),
            "eip": self.eip,
            "eflags": self.get_eflags(),
            "segs": [
                [self.sel[s], self.segbase[s], self.seglimit[s], self.segflags[s]]
                for s in range(6)
            ],
            "cpl": self.cpl,
            "gdt": list(self.gdt),
            "idt": list(self.idt),
            "ldtr": list(self.ldtr),
            "tr": list(self.tr),
            "cr": list(self.cr),
            "dr": list(self.dr),
            "msr": dict(self.msr),
            "tsc_offset": self.tsc_offset,
            "halted": self.halted,
            "inhibit": self.inhibit,
            "irq_level": self.irq_level,
            "icount": self.icount,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Load :meth:`get_state` data; everything is checked before anything changes."""
        try:
            regs = _words(state["regs"], 8, "regs")
            segs = [_words(seg, 4, "segs") for seg in _seq(state["segs"], 6, "segs")]
            cr = _words(state["cr"], 5, "cr")
            dr = _words(state["dr"], 8, "dr")
            gdt, idt = _words(state["gdt"], 2, "gdt"), _words(state["idt"], 2, "idt")
            ldtr, tr = _words(state["ldtr"], 4, "ldtr"), _words(state["tr"], 4, "tr")
            msr = state["msr"]
            if not isinstance(msr, dict) or set(msr) != set(self.msr):
                raise ValueError(f"msr must name {sorted(self.msr)}")
            msr = {name: _word(value, 64, name) for name, value in msr.items()}
            eip, eflags = _word(state["eip"], 32, "eip"), _word(state["eflags"], 32, "eflags")
            cpl = _word(state["cpl"], 2, "cpl")
            tsc_offset = _word(state["tsc_offset"], 64, "tsc_offset")
            icount = _word(state["icount"], 64, "icount")
            flags = [bool(state[name]) for name in ("halted", "inhibit", "irq_level")]
        except (KeyError, TypeError, ValueError) as exc:
            raise MachineError(f"i386 CPU state is malformed: {exc}") from None
        self.r[:] = regs
        for s, (sel, base, limit, seg_flags) in enumerate(segs):
            self.sel[s], self.segbase[s] = sel, base
            self.seglimit[s], self.segflags[s] = limit, seg_flags
        self.cr[:], self.dr[:] = cr, dr
        self.gdt, self.idt, self.ldtr, self.tr = gdt, idt, ldtr, tr
        self.msr, self.eip, self.cpl = msr, eip, cpl
        self.tsc_offset, self.icount = tsc_offset, icount
        self.halted, self.inhibit, self.irq_level = flags
        self.eflags = (eflags & ~ARITH) | 2
        self.fl = (0, eflags & ARITH, 0, 0)
        self.tlb.flush()
        self.cache.flush()
        self.update_mode()

    # --- execution -------------------------------------------------------------------

    def run(self, budget: int) -> int:
        """Execute up to ``budget`` instructions; see :meth:`arctern.cpu.base.CPU.run`."""
        if not self.cr[0] & CR0_PE:
            raise MachineError(
                "the i386 CPU emulates protected mode only: boot a Multiboot kernel (-kernel)"
            )
        machine = self.machine
        blocks = self.cache.blocks
        tracing = trace.cpu.isEnabledFor(logging.DEBUG) or trace.exec_.isEnabledFor(logging.DEBUG)
        done = 0
        blk: TranslatedBlock | None = None
        while done < budget:
            try:
                while done < budget:
                    if machine.exit_request:
                        budget = done
                        break
                    # STI's interrupt shadow covers one instruction: with an interrupt
                    # pending, run just that one before taking it (a stale shadow must
                    # not hold back a later interrupt for a whole slice).
                    shadow = False
                    if self.inhibit:
                        self.inhibit = False
                        shadow = bool(self.irq_level and self.eflags & IF)
                    elif self.irq_level and self.eflags & IF:
                        self._external_interrupt()
                    if self.halted:
                        budget = done
                        break
                    if tracing:
                        self._trace_block()
                    blk = None
                    if self._key_is_eip:
                        blk = blocks.get(self.eip | self.mode_key)
                    else:
                        blk = self._lookup_translated(blocks)
                    left = 1 if shadow else budget - done
                    fits = blk is None or blk.count <= left or shadow or self.exact_budget
                    if not fits and done:
                        budget = done  # the next block does not fit: end the slice here
                        break
                    if blk is None or blk.count > left:
                        blk = None
                        blk = self._translate(left)
                    traced = self.mode.single and self.eflags & TF
                    self.eip = blk.fn(left, self.eip)
                    if blk.loops:
                        done += self.loopn
                    else:
                        done += blk.count
                    if traced:
                        self.raise_interrupt(1, None, self.eip)
            except Fault as exc:
                done += self._rewind(exc, blk)
                self.raise_interrupt(exc.vector, exc.code, self.eip)
            except RepYield as exc:
                done += self._rewind(exc, blk) + exc.args[0]
                break
            except CodeModified as exc:
                done += self._rewind(exc, blk) + 1
                self.eip = blk.next_pcs[fault_index(exc, blk)]
            except (struct.error, IndexError) as exc:
                if blk is None:
                    raise
                done += self._rewind(exc, blk)
                done += self._step_slow()
        self.icount += done
        return done

    def _rewind(self, exc: BaseException, blk: TranslatedBlock | None) -> int:
        """Set EIP to the instruction that raised ``exc``; return instructions retired before it."""
        if blk is None:
            return 0
        idx = fault_index(exc, blk)
        self.eip = blk.pcs[idx]
        return blk.offsets[idx] + (self.loopn if blk.loops else 0)

    def _trace_block(self) -> None:
        """``-d cpu``: the registers before a translated block; ``-d exec``: its address."""
        if trace.exec_.isEnabledFor(logging.DEBUG):
            trace.exec_.debug("Trace: %08x [%08x]", self.eip, self.eip + self.segbase[CS])
        if trace.cpu.isEnabledFor(logging.DEBUG):
            trace.cpu.debug("%s", self.dump_state())

    def _step_slow(self) -> int:
        """Run one instruction with every memory access through the softmmu helpers."""
        blk = self._translate(1, extra=_SLOW | _SINGLE)
        try:
            self.eip = blk.fn(1, self.eip)
        except Fault as exc:
            self.raise_interrupt(exc.vector, exc.code, self.eip)
            return 0
        except CodeModified:
            self.eip = blk.next_pcs[0]
        return 1

    def _external_interrupt(self) -> None:
        ack = self.irq_ack
        if ack is None:
            return
        vector = ack()
        if vector is None:
            return
        self.halted = False
        self.raise_interrupt(vector, None, self.eip, ext=True)

    def _lookup_translated(self, blocks: dict[int, TranslatedBlock]) -> TranslatedBlock | None:
        """Block lookup when code addresses are not plain EIPs (segment bases, paging)."""
        lin = (self.eip + self.segbase[CS]) & 0xFFFFFFFF
        try:
            key = self.fetch_page(lin)
        except Fault:
            return None
        blk = blocks.get(key | self.mode_key)
        if blk is not None and blk.pc != self.eip:
            return None
        return blk

    # --- translation -----------------------------------------------------------------

    def _translate(self, limit: int, extra: int = 0) -> TranslatedBlock:
        """Translate the code at EIP and cache it.

        The unit is a region: the block at EIP plus the blocks of the same page it
        reaches through direct jumps, so loops spanning several blocks run inside one
        Python function with the registers in locals. Its entry block holds at most
        ``limit`` instructions.
        """
        mode_bits = self.mode.bits | extra
        if limit < MAX_BLOCK_INSNS:
            mode_bits |= _SINGLE
        mode = Mode.from_bits(mode_bits)
        pc = self.eip
        cs_base = self.segbase[CS]
        lin = (pc + cs_base) & 0xFFFFFFFF
        phys = self.fetch_page(lin)
        key = (pc if self._key_is_eip else phys) | mode_bits << 32
        blk = self.cache.blocks.get(key)
        if blk is not None and blk.pc == pc:
            return blk
        page_lin = lin & ~0xFFF
        page = _Page(self, page_lin, phys & ~0xFFF, mode.code32)
        blocks: list[tuple[int, list]] = []
        seen: set[int] = set()
        work = [pc]
        total = 0
        while work and len(blocks) < MAX_REGION_BLOCKS and total < MAX_REGION_INSNS:
            start = work.pop(0)
            if start in seen:
                continue
            seen.add(start)
            try:
                insns = page.block(start, cs_base, 1 if mode.single else MAX_BLOCK_INSNS)
            except Fault:
                if not blocks:
                    raise
                continue
            if not insns:
                continue
            blocks.append((start, insns))
            total += len(insns)
            if mode.single:
                break
            last = insns[-1]
            # a callee is not pulled into the caller's region: its RET leaves it anyway
            for target in (successors(last) or ()) if last.op != "call" else ():
                if (target + cs_base) & ~0xFFF == page_lin and target not in seen:
                    work.append(target)
        compiler = BlockCompiler(blocks, mode)
        source, lines, counted = compiler.compile()
        fn = compile_block(source, f"<i386 block {pc:#x}>", self._namespace)
        insns = [insn for _start, block in blocks for insn in block]
        pcs, next_pcs = [i.addr for i in insns], [i.next for i in insns]
        cached = self.cache.blocks
        for start, block in blocks if counted else blocks[:1]:
            # every block of a region is an entry point: a slice that ends inside a
            # loop resumes in the same compiled code instead of translating again
            entry_key = (
                start if self._key_is_eip else page.phys(start, cs_base)
            ) | mode_bits << 32
            if start != pc and entry_key in cached:
                continue
            entry = TranslatedBlock(
                entry_key, fn, start, len(block), page.ranges, lines, pcs, next_pcs,
                compiler.offsets, counted, source,
            )
            self.cache.insert(entry)
            if start == pc:
                blk = entry
        if trace.in_asm.isEnabledFor(logging.DEBUG):
            for _start, block in blocks:
                trace.in_asm.debug("IN:\n%s\n", "\n".join(insn_text(i) for i in block))
        return blk

    def dump_state(self) -> str:
        """Registers in the layout of QEMU's ``-d cpu``."""
        r = self.r
        names = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP")
        order = (0, 3, 1, 2, 6, 7, 5, 4)
        regs = " ".join(f"{n}={r[i]:08x}" for n, i in zip(names, order, strict=True))
        segs = " ".join(
            f"{n}={self.sel[s]:04x} {self.segbase[s]:08x}"
            for n, s in (("ES", ES), ("CS", CS), ("SS", SS), ("DS", DS), ("FS", FS), ("GS", GS))
        )
        return (
            f"{regs}\nEIP={self.eip:08x} EFL={self.get_eflags():08x} CPL={self.cpl} "
            f"HLT={int(self.halted)}\n{segs}\nCR0={self.cr[0]:08x} CR2={self.cr[2]:08x} "
            f"CR3={self.cr[3]:08x} CR4={self.cr[4]:08x}"
        )


def _word(value: Any, bits: int, name: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise ValueError(f"{name}: {value!r} is not a {bits}-bit unsigned integer")
    return value


def _seq(value: Any, count: int, name: str) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"{name}: a list of {count} expected")
    return list(value)


def _words(value: Any, count: int, name: str) -> list[int]:
    return [_word(v, 32, name) for v in _seq(value, count, name)]


class _Page:
    """The guest code page being translated: decodes blocks from it."""

    def __init__(self, cpu: I386CPU, page_lin: int, page_phys: int, code32: bool) -> None:
        self.cpu = cpu
        self.page_lin = page_lin
        self.buf = cpu.phys.read_bytes(page_phys, 0x1000)
        self.code32 = code32
        self.ranges = [(page_phys, page_phys + 0x1000)]
        self.extended = False

    def block(self, pc: int, cs_base: int, cap: int) -> list:
        """Decode up to ``cap`` instructions from ``pc`` to a terminator or the page end.

        Raises the fetch fault when not even the first instruction can be fetched.
        """
        insns = []
        pos = (pc + cs_base - self.page_lin) & 0xFFFFFFFF
        while len(insns) < cap and pos < 0x1000:
            addr = (self.page_lin + pos - cs_base) & 0xFFFFFFFF
            try:
                insn = decode(self.buf, pos, addr, self.code32)
            except NeedBytes:
                try:
                    extended = self._extend()
                except Fault:
                    if insns:
                        break
                    raise
                if not extended:
                    break
                continue
            insns.append(insn)
            pos += insn.length
            if insn.op in TERMINATORS:
                break
        return insns

    def phys(self, pc: int, cs_base: int) -> int:
        """Physical address of code offset ``pc`` on this page."""
        return self.ranges[0][0] + ((pc + cs_base - self.page_lin) & 0xFFF)

    def _extend(self) -> bool:
        """Append the first bytes of the next page (an instruction straddles the boundary)."""
        if self.extended:
            return False
        nxt = self.cpu.fetch_page((self.page_lin + 0x1000) & 0xFFFFFFFF)
        self.buf += self.cpu.phys.read_bytes(nxt, 16)
        self.ranges.append((nxt, nxt + 16))
        self.extended = True
        return True
