"""Protected-mode system architecture: descriptors, segment loads, interrupt delivery,
far transfers, IRET, control registers, MSRs and CPUID.

Helpers named ``h_*`` run from translated code after it wrote the registers
back to the CPU object; they validate everything before committing anything,
so a fault leaves the state of the instruction boundary.
"""

from __future__ import annotations

import logging

from arctern.cpu import trace

from .decoder import CS, DS, ES, FS, GS, SS
from .faults import CONTRIBUTORY, WITH_ERROR_CODE, Fault
from .flags import ARITH, DF, FLAGS, IF, IOPL, NT, RF, TF, VM
from .mmu import CR0_PE, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE

log = logging.getLogger(__name__)

# Descriptor cache "flags": the high dword of the descriptor masked with 0x00f0ff00 (as QEMU).
DESC_P, DESC_S, DESC_CODE, DESC_CONFORMING, DESC_RW, DESC_A = (
    0x8000, 0x1000, 0x800, 0x400, 0x200, 0x100,
)
DESC_B, DESC_G = 0x400000, 0x800000
FLAT_CODE, FLAT_DATA = 0xCF9B00, 0xCF9300

MSR_TSC, MSR_APICBASE = 0x10, 0x1B
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x174, 0x175, 0x176
_MSR_NAMES = {
    MSR_SYSENTER_CS: "sysenter_cs",
    MSR_SYSENTER_ESP: "sysenter_esp",
    MSR_SYSENTER_EIP: "sysenter_eip",
    MSR_APICBASE: "apic_base",
}

# CPUID leaf 1 EDX: what this CPU implements (no x87/MMX/SSE: they raise #UD). Bit 9, the
# on-chip APIC, as QEMU's qemu32 and pentium: the board gives every CPU its local APIC.
CPUID_FEATURES = (
    (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 13) | (1 << 15)
)


def parse_descriptor(lo: int, hi: int) -> tuple[int, int, int]:
    """(base, limit in bytes - 1, flags) of an 8-byte segment descriptor."""
    base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    if hi & DESC_G:
        limit = (limit << 12) | 0xFFF
    return base, limit, hi & 0x00F0FF00


class SystemMixin:
    """Segment, interrupt and control-register logic of :class:`I386CPU`."""

    def get_eflags(self) -> int:
        fo, fr, fa, fb = self.fl
        return self.eflags | FLAGS[fo](fr, fa, fb)

    def set_eflags(self, value: int, mask: int = 0xFFFFFFFF) -> None:
        value = (self.get_eflags() & ~mask) | (value & mask)
        self.eflags = (value & 0x003F7FD5 & ~ARITH) | 2
        self.fl = (0, value & ARITH, 0, 0)
        self.update_mode()

    # --- descriptors and segments ---------------------------------------------------

    def read_descriptor(self, sel: int, error: int = 13) -> tuple[int, int, int]:
        """(low dword, high dword, linear address) of the descriptor ``sel`` names."""
        if sel & 4:
            base, limit = self.ldtr[1], self.ldtr[2]
        else:
            base, limit = self.gdt
        index = sel & ~7
        if index + 7 > limit:
            raise Fault(error, sel & 0xFFFC)
        addr = (base + index) & 0xFFFFFFFF
        return self.read_sys(addr, 4), self.read_sys(addr + 4, 4), addr

    def _set_accessed(self, addr: int, hi: int) -> None:
        if not hi & DESC_A:
            self.write_sys(addr + 4, 4, hi | DESC_A)

    def set_segment(self, seg: int, sel: int, base: int, limit: int, flags: int) -> None:
        self.sel[seg] = sel
        self.segbase[seg] = base
        self.seglimit[seg] = limit
        self.segflags[seg] = flags
        if seg == CS:
            self.cpl = sel & 3 if self.cr[0] & CR0_PE else 0
        self.update_mode()

    def h_load_seg(self, seg: int, sel: int, size: int = 4) -> None:
        """MOV/POP/LxS to a segment register: descriptor checks, then load."""
        sel &= 0xFFFF
        if not self.cr[0] & CR0_PE:
            self.set_segment(seg, sel, sel << 4, 0xFFFF, self.segflags[seg])
            return
        if sel & 0xFFFC == 0:
            if seg == SS:
                raise Fault(13, 0)
            self.set_segment(seg, sel, 0, 0, 0)
            return
        lo, hi, addr = self.read_descriptor(sel)
        base, limit, flags = parse_descriptor(lo, hi)
        rpl, dpl = sel & 3, (hi >> 13) & 3
        cpl = self.cpl
        if not flags & DESC_S:
            raise Fault(13, sel & 0xFFFC)
        code = flags & DESC_CODE
        if seg == SS:
            if code or not flags & DESC_RW or rpl != cpl or dpl != cpl:
                raise Fault(13, sel & 0xFFFC)
            if not flags & DESC_P:
                raise Fault(12, sel & 0xFFFC)
        else:
            if code and not flags & DESC_RW:
                raise Fault(13, sel & 0xFFFC)
            if (not code or not flags & DESC_CONFORMING) and (rpl > dpl or cpl > dpl):
                raise Fault(13, sel & 0xFFFC)
            if not flags & DESC_P:
                raise Fault(11, sel & 0xFFFC)
        self._set_accessed(addr, hi)
        self.set_segment(seg, sel, base, limit, flags | DESC_A)

    def _code_descriptor(self, sel: int, cpl: int, *, rpl_check: bool = True) -> tuple:
        """Checks for a CS load by a far transfer; returns (base, limit, flags, addr, hi)."""
        if sel & 0xFFFC == 0:
            raise Fault(13, 0)
        lo, hi, addr = self.read_descriptor(sel)
        base, limit, flags = parse_descriptor(lo, hi)
        dpl = (hi >> 13) & 3
        if not flags & DESC_S or not flags & DESC_CODE:
            raise Fault(13, sel & 0xFFFC)
        if flags & DESC_CONFORMING:
            if dpl > cpl:
                raise Fault(13, sel & 0xFFFC)
        elif rpl_check and ((sel & 3) > cpl or dpl != cpl):
            raise Fault(13, sel & 0xFFFC)
        if not flags & DESC_P:
            raise Fault(11, sel & 0xFFFC)
        return base, limit, flags, addr, hi

    def _push_sys(self, values: list[int], size: int, esp: int, ss_base: int) -> int:
        """Push ``values`` (first pushed first) on the stack at ss_base:esp; return new ESP."""
        user = self.cpl == 3
        for value in values:
            esp = (esp - size) & 0xFFFFFFFF
            self.write_sys(ss_base + esp, size, value & ((1 << (size * 8)) - 1), user)
        return esp

    def _pop_sys(self, count: int, size: int) -> list[int]:
        esp, base = self.r[4], self.segbase[SS]
        out = []
        for k in range(count):
            out.append(self.read_lin((base + esp + k * size) & 0xFFFFFFFF, size))
        return out

    # --- far transfers ----------------------------------------------------------------

    def h_far_jump(self, sel: int, offset: int, next_eip: int, call: bool, size: int) -> None:
        if not self.cr[0] & CR0_PE:
            raise Fault(13, 0)
        base, limit, flags, addr, hi = self._code_descriptor(sel, self.cpl)
        if call:
            esp = self._push_sys(
                [self.sel[CS], next_eip], size, self.r[4], self.segbase[SS]
            )
            self.r[4] = esp
        self._set_accessed(addr, hi)
        self.set_segment(CS, (sel & 0xFFFC) | self.cpl, base, limit, flags | DESC_A)
        self.eip = offset if size == 4 else offset & 0xFFFF

    def h_retf(self, size: int, imm: int) -> None:
        eip, cs = self._pop_sys(2, size)
        cs &= 0xFFFF
        rpl = cs & 3
        if rpl < self.cpl:
            raise Fault(13, cs & 0xFFFC)
        base, limit, flags, addr, hi = self._code_descriptor(cs, rpl, rpl_check=False)
        esp = (self.r[4] + 2 * size + imm) & 0xFFFFFFFF
        if rpl > self.cpl:
            self.r[4] = esp
            new_esp, ss = self._pop_sys(2, size)
            self._return_outer(cs, base, limit, flags, ss, (new_esp + imm) & 0xFFFFFFFF)
        else:
            self.r[4] = esp
            self.set_segment(CS, cs, base, limit, flags)
        self.eip = eip

    def _return_outer(
        self, cs: int, base: int, limit: int, flags: int, ss: int, esp: int
    ) -> None:
        """Finish a return to an outer privilege level: new CS, SS:ESP, data segment checks."""
        saved = (list(self.sel), list(self.segbase), list(self.seglimit), list(self.segflags))
        old_cpl = self.cpl
        self.set_segment(CS, cs, base, limit, flags)
        try:
            self.h_load_seg(SS, ss & 0xFFFF)
        except Fault:
            self.sel[:], self.segbase[:], self.seglimit[:], self.segflags[:] = saved
            self.cpl = old_cpl
            self.update_mode()
            raise
        self.r[4] = esp
        for seg in (ES, DS, FS, GS):
            f = self.segflags[seg]
            dpl = (f >> 13) & 3
            if (not f & DESC_CODE or not f & DESC_CONFORMING) and dpl < self.cpl:
                self.set_segment(seg, 0, 0, 0, 0)

    def h_iret(self, size: int) -> None:
        if not self.cr[0] & CR0_PE:
            raise Fault(13, 0)
        if self.eflags & NT:
            raise Fault(13, 0)  # nested task return: tasks are not emulated
        eip, cs, flags_img = self._pop_sys(3, size)
        cs &= 0xFFFF
        rpl = cs & 3
        if rpl < self.cpl:
            raise Fault(13, cs & 0xFFFC)
        base, limit, flags, addr, hi = self._code_descriptor(cs, rpl, rpl_check=False)
        old_cpl = self.cpl
        mask = self._eflags_mask(old_cpl) & (0xFFFF if size == 2 else 0xFFFFFFFF)
        esp = (self.r[4] + 3 * size) & 0xFFFFFFFF
        if rpl > old_cpl:
            self.r[4] = esp
            new_esp, ss = self._pop_sys(2, size)
            self._return_outer(cs, base, limit, flags, ss, new_esp)
        else:
            self.r[4] = esp
            self.set_segment(CS, cs, base, limit, flags)
        self.set_eflags(flags_img & ~VM, mask)
        self.eip = eip

    def _eflags_mask(self, cpl: int) -> int:
        """EFLAGS bits POPF/IRET may change at privilege ``cpl``."""
        mask = ARITH | TF | DF | NT | 0x40000 | 0x200000 | RF
        if cpl == 0:
            mask |= IOPL | IF
        elif cpl <= (self.eflags >> 12) & 3:
            mask |= IF
        return mask

    def h_popf(self, value: int, size: int) -> None:
        mask = self._eflags_mask(self.cpl) & ~RF
        if size == 2:
            mask &= 0xFFFF
        self.set_eflags(value, mask)

    def h_enter(self, frame: int, level: int, size: int) -> None:
        r = self.r
        ss_base = self.segbase[SS]
        esp, ebp = r[4], r[5]
        values = [ebp]
        frame_ptr = (esp - size) & 0xFFFFFFFF
        for k in range(1, level):
            values.append(self.read_lin((ss_base + ebp - k * size) & 0xFFFFFFFF, size))
        if level:
            values.append(frame_ptr)
        esp = self._push_sys(values, size, esp, ss_base)
        r[5] = frame_ptr if size == 4 else (ebp & 0xFFFF0000) | (frame_ptr & 0xFFFF)
        r[4] = (esp - frame) & 0xFFFFFFFF

    # --- interrupts and exceptions ---------------------------------------------------

    def h_int(self, vector: int, next_eip: int) -> None:
        """INT n / INT3 / INTO / INT1 from translated code."""
        self.deliver(vector, None, next_eip, soft=True)

    def raise_interrupt(self, vector: int, code: int | None, eip: int, ext: bool = False) -> None:
        """Deliver an exception or interrupt, escalating to #DF and triple fault."""
        try:
            self.deliver(vector, code, eip, ext=ext)
        except Fault as second:
            if vector == 8:
                self.triple_fault()
                return
            benign = vector not in CONTRIBUTORY and vector != 14
            if benign or (
                vector in CONTRIBUTORY and second.vector not in CONTRIBUTORY
            ) or (vector == 14 and second.vector not in CONTRIBUTORY and second.vector != 14):
                self.raise_interrupt(second.vector, second.code, eip, ext=True)
                return
            self.raise_interrupt(8, 0, eip, ext=True)

    def deliver(
        self, vector: int, code: int | None, eip: int, *, soft: bool = False, ext: bool = False
    ) -> None:
        """Protected-mode delivery through an interrupt or trap gate of the IDT."""
        if trace.interrupts.isEnabledFor(logging.DEBUG):
            trace.interrupts.debug(
                "interrupt vector %#x error %s at cs:eip %04x:%08x", vector, code,
                self.sel[CS], eip,
            )
        if not self.cr[0] & CR0_PE:
            raise Fault(13, 0)
        ext_bit = 1 if ext else 0
        offset = vector * 8
        base, limit = self.idt
        if offset + 7 > limit:
            raise Fault(13, offset + 2 + ext_bit)
        lo = self.read_sys(base + offset, 4)
        hi = self.read_sys(base + offset + 4, 4)
        gate_type = (hi >> 8) & 0x1F
        if gate_type not in (0x06, 0x07, 0x0E, 0x0F):
            raise Fault(13, offset + 2 + ext_bit)
        if soft and (hi >> 13) & 3 < self.cpl:
            raise Fault(13, offset + 2)
        if not hi & 0x8000:
            raise Fault(11, offset + 2 + ext_bit)
        sel = lo >> 16
        target = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        size = 4 if gate_type & 8 else 2
        if sel & 0xFFFC == 0:
            raise Fault(13, ext_bit)
        cbase, climit, cflags, caddr, chi = self._code_descriptor(sel, self.cpl, rpl_check=False)
        dpl = (chi >> 13) & 3
        if dpl > self.cpl:
            raise Fault(13, (sel & 0xFFFC) + ext_bit)
        new_cpl = self.cpl if cflags & DESC_CONFORMING else dpl
        eflags = self.get_eflags()
        frame = [eflags, self.sel[CS], eip]
        if vector in WITH_ERROR_CODE and code is not None and not soft:
            frame.append(code)
        if new_cpl < self.cpl:
            ss, esp, ss_desc = self._tss_stack(new_cpl)
            frame = [self.sel[SS], self.r[4]] + frame
            esp = self._push_frame(frame, size, esp, ss_desc[0], new_cpl)
            self.set_segment(CS, (sel & 0xFFFC) | new_cpl, cbase, climit, cflags)
            self.set_segment(SS, ss, *ss_desc)
        else:
            esp = self._push_frame(frame, size, self.r[4], self.segbase[SS], self.cpl)
            self.set_segment(CS, (sel & 0xFFFC) | new_cpl, cbase, climit, cflags)
        self.r[4] = esp
        self.eflags &= ~(TF | NT | RF | VM)
        if not gate_type & 1:
            self.eflags &= ~IF
        self.eip = target if size == 4 else target & 0xFFFF
        self.halted = False
        self.update_mode()

    def _push_frame(self, values: list[int], size: int, esp: int, ss_base: int, cpl: int) -> int:
        """Push an interrupt frame with the privilege of the handler (``cpl``)."""
        saved, self.cpl = self.cpl, cpl
        try:
            return self._push_sys(values, size, esp, ss_base)
        finally:
            self.cpl = saved

    def _tss_stack(self, cpl: int) -> tuple[int, int, tuple[int, int, int]]:
        """SS:ESP for privilege ``cpl`` from the 32-bit TSS, with the SS checks."""
        tr_base, tr_limit = self.tr[1], self.tr[2]
        offset = 4 + cpl * 8
        if offset + 5 > tr_limit:
            raise Fault(10, self.tr[0] & 0xFFFC)
        esp = self.read_sys(tr_base + offset, 4)
        ss = self.read_sys(tr_base + offset + 4, 2)
        if ss & 0xFFFC == 0 or ss & 3 != cpl:
            raise Fault(10, ss & 0xFFFC)
        lo, hi, _addr = self.read_descriptor(ss, error=10)
        base, limit, flags = parse_descriptor(lo, hi)
        if flags & DESC_CODE or not flags & DESC_RW or (hi >> 13) & 3 != cpl:
            raise Fault(10, ss & 0xFFFC)
        if not flags & DESC_P:
            raise Fault(12, ss & 0xFFFC)
        return ss, esp, (base, limit, flags)

    def triple_fault(self) -> None:
        """A fault while delivering #DF: the machine resets (QEMU) or shuts down."""
        log.warning("triple fault at eip %#x: resetting the machine", self.eip)
        request = getattr(self.machine, "request_reset", None)
        if request is not None:
            request()
        else:
            self.halted = True
            self.shutdown = True

    # --- LDT, TR, descriptor queries --------------------------------------------------

    def h_lldt(self, sel: int) -> None:
        if sel & 0xFFFC == 0:
            self.ldtr = [sel, 0, 0, 0]
            return
        if sel & 4:
            raise Fault(13, sel & 0xFFFC)
        lo, hi, _ = self.read_descriptor(sel)
        base, limit, flags = parse_descriptor(lo, hi)
        if flags & DESC_S or (flags >> 8) & 0xF != 2:
            raise Fault(13, sel & 0xFFFC)
        if not flags & DESC_P:
            raise Fault(11, sel & 0xFFFC)
        self.ldtr = [sel, base, limit, flags]

    def h_ltr(self, sel: int) -> None:
        if sel & 0xFFFC == 0 or sel & 4:
            raise Fault(13, sel & 0xFFFC)
        lo, hi, addr = self.read_descriptor(sel)
        base, limit, flags = parse_descriptor(lo, hi)
        if flags & DESC_S or (flags >> 8) & 0xF not in (1, 9):
            raise Fault(13, sel & 0xFFFC)
        if not flags & DESC_P:
            raise Fault(11, sel & 0xFFFC)
        self.write_sys(addr + 4, 4, hi | 0x200)
        self.tr = [sel, base, limit, flags | 0x200]

    def _query(self, sel: int, ok_types: tuple[int, ...] | None) -> tuple[int, int] | None:
        """Descriptor of ``sel`` if visible at CPL/RPL (LAR, LSL, VERR, VERW), else None."""
        if sel & 0xFFFC == 0:
            return None
        try:
            lo, hi, _ = self.read_descriptor(sel)
        except Fault:
            return None
        flags = hi & 0x00F0FF00
        dpl = (hi >> 13) & 3
        if flags & DESC_S:
            conforming_code = flags & DESC_CODE and flags & DESC_CONFORMING
            if not conforming_code and (dpl < self.cpl or dpl < sel & 3):
                return None
        elif ok_types is not None and (flags >> 8) & 0xF not in ok_types:
            return None
        return lo, hi

    def _set_zf(self, value: bool) -> None:
        f = self.get_eflags() & ARITH
        self.fl = (0, (f | 0x40) if value else (f & ~0x40), 0, 0)

    def h_lar(self, sel: int) -> int | None:
        desc = self._query(sel, (1, 2, 3, 4, 5, 9, 11, 12))
        self._set_zf(desc is not None)
        return None if desc is None else desc[1] & 0x00F0FF00

    def h_lsl(self, sel: int) -> int | None:
        desc = self._query(sel, (1, 2, 3, 9, 11))
        self._set_zf(desc is not None)
        return None if desc is None else parse_descriptor(*desc)[1]

    def h_verr(self, sel: int) -> None:
        desc = self._query(sel, ())
        ok = desc is not None and desc[1] & DESC_S and (
            not desc[1] & DESC_CODE or desc[1] & DESC_RW
        )
        self._set_zf(bool(ok))

    def h_verw(self, sel: int) -> None:
        desc = self._query(sel, ())
        ok = desc is not None and desc[1] & DESC_S and not desc[1] & DESC_CODE and desc[1] & DESC_RW
        self._set_zf(bool(ok))

    # --- control registers, MSRs, CPUID, TSC ----------------------------------------

    def h_write_cr(self, n: int, value: int) -> None:
        value &= 0xFFFFFFFF
        cr = self.cr
        if n == 0:
            if value & CR0_PG and not value & CR0_PE:
                raise Fault(13, 0)
            value |= 0x10
            if (value ^ cr[0]) & (CR0_PG | CR0_WP | CR0_PE):
                self.tlb.flush()
            cr[0] = value
            self.set_segment(CS, self.sel[CS], *self._seg_cache(CS))
        elif n == 3:
            cr[3] = value
            self.tlb.flush()
        elif n == 4:
            if value & ~0x3FF:
                raise Fault(13, 0)
            if (value ^ cr[4]) & (CR4_PSE | CR4_PGE):
                self.tlb.flush()
            cr[4] = value
        else:
            cr[n] = value
        self.update_mode()

    def _seg_cache(self, seg: int) -> tuple[int, int, int]:
        return self.segbase[seg], self.seglimit[seg], self.segflags[seg]

    def h_invlpg(self, lin: int) -> None:
        self.tlb.flush_page(lin)

    def cpuid(self, leaf: int, sub: int) -> tuple[int, int, int, int]:
        if leaf == 0:
            return (2, 0x756E6547, 0x6C65746E, 0x49656E69)  # "GenuineIntel"
        if leaf == 1:
            return (self.cpuid_signature, 0x800, 0, self.cpuid_features)
        if leaf == 2:
            return (1, 0, 0, 0x2C307D)
        if leaf == 0x80000000:
            return (0x80000004, 0, 0, 0)
        if 0x80000002 <= leaf <= 0x80000004:
            text = self.model_id.encode().ljust(48, b"\0")[(leaf - 0x80000002) * 16 :][:16]
            return tuple(int.from_bytes(text[i : i + 4], "little") for i in range(0, 16, 4))
        return (0, 0, 0, 0)

    def rdtsc(self) -> int:
        clock = getattr(self.machine, "clock", None)
        now = clock.ns() if clock is not None else self.icount
        return (now + self.tsc_offset) & 0xFFFFFFFFFFFFFFFF

    def rdmsr(self, index: int) -> int:
        if index == MSR_TSC:
            return self.rdtsc()
        name = _MSR_NAMES.get(index)
        if name is None:
            raise Fault(13, 0)
        return self.msr[name]

    def wrmsr(self, index: int, value: int) -> None:
        if index == MSR_TSC:
            self.tsc_offset = 0
            self.tsc_offset = (value - self.rdtsc()) & 0xFFFFFFFFFFFFFFFF
            return
        name = _MSR_NAMES.get(index)
        if name is None:
            raise Fault(13, 0)
        self.msr[name] = value
