"""Linear memory for the i386 CPU: paging (4 KiB and 4 MiB pages), the TLB, #PF.

These are the slow paths of translated code (``RD``/``WR``) and the accessors
of system structures (GDT, IDT, TSS, stacks during interrupt delivery).
"""

from __future__ import annotations

from arctern.cpu.softmmu import TLB, PhysicalMemory
from arctern.errors import MachineError

from .faults import Fault

CR0_PE, CR0_TS, CR0_WP, CR0_PG = 1, 8, 1 << 16, 1 << 31
CR4_PSE, CR4_PGE = 0x10, 0x80
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D, PDE_PS = 1, 2, 4, 0x20, 0x40, 0x80
READ, WRITE, FETCH = 0, 1, 2


class LinearMemory:
    """Mixin: linear reads/writes through paging for :class:`I386CPU`."""

    phys: PhysicalMemory
    tlb: TLB
    cr: list[int]
    cpl: int

    def read_lin(self, lin: int, size: int) -> int:
        """Read ``size`` bytes at linear ``lin`` with the current privilege (``RD``)."""
        if not self.cr[0] & CR0_PG:
            return self.phys.read(lin, size)
        user = self.cpl == 3
        if (lin & 0xFFF) + size > 0x1000:
            return self._read_split(lin, size, user)
        return self.phys.read(self.xlate(lin, READ, user), size)

    def write_lin(self, lin: int, size: int, value: int) -> bool:
        """Write at linear ``lin`` (``WR``); True when translated code was overwritten."""
        if not self.cr[0] & CR0_PG:
            return self.phys.write(lin, size, value)
        user = self.cpl == 3
        if (lin & 0xFFF) + size > 0x1000:
            return self._write_split(lin, size, value, user)
        return self.phys.write(self.xlate(lin, WRITE, user), size, value)

    def read_sys(self, lin: int, size: int) -> int:
        """Supervisor read (descriptor tables, TSS), whatever the CPL."""
        if not self.cr[0] & CR0_PG:
            return self.phys.read(lin & 0xFFFFFFFF, size)
        if (lin & 0xFFF) + size > 0x1000:
            return self._read_split(lin, size, False)
        return self.phys.read(self.xlate(lin & 0xFFFFFFFF, READ, False), size)

    def write_sys(self, lin: int, size: int, value: int, user: bool = False) -> None:
        if not self.cr[0] & CR0_PG:
            self.phys.write(lin & 0xFFFFFFFF, size, value)
        elif (lin & 0xFFF) + size > 0x1000:
            self._write_split(lin, size, value, user)
        else:
            self.phys.write(self.xlate(lin & 0xFFFFFFFF, WRITE, user), size, value)

    def _read_split(self, lin: int, size: int, user: bool) -> int:
        first = 0x1000 - (lin & 0xFFF)
        lo_addr = self.xlate(lin, READ, user)
        hi_addr = self.xlate((lin + first) & 0xFFFFFFFF, READ, user)
        lo = self.phys.read_bytes(lo_addr, first)
        hi = self.phys.read_bytes(hi_addr, size - first)
        return int.from_bytes(lo + hi, "little")

    def _write_split(self, lin: int, size: int, value: int, user: bool) -> bool:
        first = 0x1000 - (lin & 0xFFF)
        lo_addr = self.xlate(lin, WRITE, user)
        hi_addr = self.xlate((lin + first) & 0xFFFFFFFF, WRITE, user)
        data = value.to_bytes(size, "little")
        hit = False
        for i, addr in ((0, lo_addr), (first, hi_addr)):
            chunk = data[i : first if i == 0 else size]
            hit |= self.phys.write(addr, len(chunk), int.from_bytes(chunk, "little"))
        return hit

    def xlate(self, lin: int, kind: int, user: bool) -> int:
        """Physical address of linear ``lin`` for an access of ``kind``; fills the TLB."""
        page = self.tlb.maps[user][kind].get(lin >> 12)
        if page is None:
            page = self._walk(lin, kind, user)
        return page | (lin & 0xFFF)

    def _walk(self, lin: int, kind: int, user: bool) -> int:
        phys = self.phys
        write = kind == WRITE
        pde_addr = (self.cr[3] & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
        pde = phys.read(pde_addr, 4)
        if not pde & PTE_P:
            self._page_fault(lin, False, write, user)
        if pde & PDE_PS and self.cr[4] & CR4_PSE:
            self._check(pde, pde, lin, write, user)
            new = pde | PTE_A | (PTE_D if write else 0)
            if new != pde:
                phys.write(pde_addr, 4, new)
            page = (pde & 0xFFC00000) | (lin & 0x3FF000)
            dirty = new & PTE_D
        else:
            pte_addr = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
            pte = phys.read(pte_addr, 4)
            if not pte & PTE_P:
                self._page_fault(lin, False, write, user)
            self._check(pde, pte, lin, write, user)
            if not pde & PTE_A:
                phys.write(pde_addr, 4, pde | PTE_A)
            new = pte | PTE_A | (PTE_D if write else 0)
            if new != pte:
                phys.write(pte_addr, 4, new)
            page = pte & 0xFFFFF000
            dirty = new & PTE_D
        maps = self.tlb.maps[user]
        vpn = lin >> 12
        maps[READ][vpn] = page
        maps[FETCH][vpn] = page
        if dirty and self._writable(pde, new, user):
            maps[WRITE][vpn] = page
        return page

    def _writable(self, pde: int, pte: int, user: bool) -> bool:
        if user or self.cr[0] & CR0_WP:
            return bool(pde & pte & PTE_W)
        return True

    def _check(self, pde: int, pte: int, lin: int, write: bool, user: bool) -> None:
        if user and not pde & pte & PTE_U:
            self._page_fault(lin, True, write, user)
        if write and not self._writable(pde, pte, user):
            self._page_fault(lin, True, write, user)

    def _page_fault(self, lin: int, present: bool, write: bool, user: bool) -> None:
        self.cr[2] = lin
        raise Fault(14, present | write << 1 | user << 2)

    def virt_to_phys(self, lin: int) -> int:
        """Debugger view of linear ``lin`` (the monitor's ``x``): no fault, no A/D update."""
        lin &= 0xFFFFFFFF
        if not self.cr[0] & CR0_PG:
            return lin
        phys = self.phys
        pde = phys.read((self.cr[3] & 0xFFFFF000) | ((lin >> 20) & 0xFFC), 4)
        if pde & PTE_P and pde & PDE_PS and self.cr[4] & CR4_PSE:
            return (pde & 0xFFC00000) | (lin & 0x3FFFFF)
        if pde & PTE_P:
            pte = phys.read((pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC), 4)
            if pte & PTE_P:
                return (pte & 0xFFFFF000) | (lin & 0xFFF)
        raise MachineError(f"Cannot access memory at {lin:#010x}: the page is not mapped")

    def fetch_page(self, lin: int) -> int:
        """Physical address of the code byte at linear ``lin`` (instruction fetch)."""
        if not self.cr[0] & CR0_PG:
            return lin
        return self.xlate(lin, FETCH, self.cpl == 3)
