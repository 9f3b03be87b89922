"""The translated-block cache every translating CPU shares.

QEMU's model (translate-all.c): a guest block is translated once, cached by
its start address plus the mode flags that change its meaning, and thrown away
when the guest writes to the physical bytes it was translated from. Keys are
ints (``pc | mode << 32``) because int hashing is the cheapest lookup CPython
has. Each block remembers the guest-physical byte ranges it came from; the
cache flags those pages in ``ram.code`` so that every writer (CPU stores, DMA,
loaders) reports writes to them, and :meth:`BlockCache.invalidate` drops only
the blocks whose bytes were actually overwritten, so data sharing a page with
code does not force retranslation of unrelated blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from arctern.machine.memory import PAGE_SHIFT, RAM


class TranslatedBlock:
    """One translated guest block: the compiled function plus what invalidation needs."""

    __slots__ = (
        "key", "fn", "pc", "count", "ranges", "lines", "pcs", "next_pcs", "offsets", "loops",
        "text",
    )

    def __init__(
        self,
        key: int,
        fn: Callable[..., Any],
        pc: int,
        count: int,
        ranges: Sequence[tuple[int, int]],
        lines: Sequence[int] = (),
        pcs: Sequence[int] = (),
        next_pcs: Sequence[int] = (),
        offsets: Sequence[int] = (),
        loops: bool = False,
        text: str = "",
    ) -> None:
        self.key = key
        self.fn = fn
        #: Guest address of the first instruction.
        self.pc = pc
        #: Guest instructions of the entry block (the most a call can retire when not ``loops``).
        self.count = count
        #: Guest-physical [start, end) byte ranges the block was translated from.
        self.ranges = tuple(ranges)
        #: First source line of each instruction in the generated code (fault positions).
        self.lines = tuple(lines)
        #: Address of each instruction, and of the instruction following it.
        self.pcs = tuple(pcs)
        self.next_pcs = tuple(next_pcs)
        #: Index of each instruction within its basic block (a region holds several).
        self.offsets = tuple(offsets) or tuple(range(len(self.pcs)))
        #: True when the code counts what it retires at run time (loops, regions of
        #: several blocks); the CPU then reads the count the code left behind.
        self.loops = loops
        #: The generated source (for -d op style debugging).
        self.text = text


class BlockCache:
    """Translated blocks by key, and by guest-physical page for invalidation."""

    def __init__(self, ram: RAM) -> None:
        self.ram = ram
        self.blocks: dict[int, TranslatedBlock] = {}
        self._by_page: dict[int, list[TranslatedBlock]] = {}
        #: Bumped whenever blocks are dropped, so a writer can tell whether its store hit code.
        self.generation = 0
        self._first_page = ram.base >> PAGE_SHIFT
        ram.add_code_listener(self.invalidate)

    def close(self) -> None:
        """Stop listening to RAM writes (the CPU is going away)."""
        self.ram.remove_code_listener(self.invalidate)

    def insert(self, block: TranslatedBlock) -> None:
        old = self.blocks.get(block.key)
        if old is not None:
            self._drop(old)
        self.blocks[block.key] = block
        code, first, npages = self.ram.code, self._first_page, len(self.ram.code)
        for page in _pages(block.ranges):
            self._by_page.setdefault(page, []).append(block)
            if 0 <= page - first < npages:
                code[page - first] = 1

    def invalidate(self, start: int, end: int) -> None:
        """Drop every block translated from guest-physical bytes in [start, end)."""
        hit = []
        for page in range(start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            for block in self._by_page.get(page, ()):
                if any(s < end and start < e for s, e in block.ranges):
                    hit.append(block)
        for block in hit:
            self._drop(block)

    def flush(self) -> None:
        """Drop everything (mode change that the key does not capture, reset, state load)."""
        code, first, npages = self.ram.code, self._first_page, len(self.ram.code)
        for page in self._by_page:
            if 0 <= page - first < npages:
                code[page - first] = 0
        self.blocks.clear()
        self._by_page.clear()
        self.generation += 1

    def _drop(self, block: TranslatedBlock) -> None:
        if self.blocks.get(block.key) is block:
            del self.blocks[block.key]
        code, first, npages = self.ram.code, self._first_page, len(self.ram.code)
        for page in _pages(block.ranges):
            blocks = self._by_page.get(page)
            if blocks is None or block not in blocks:
                continue
            blocks.remove(block)
            if not blocks:
                del self._by_page[page]
                if 0 <= page - first < npages:
                    code[page - first] = 0
        self.generation += 1


def _pages(ranges: Sequence[tuple[int, int]]) -> set[int]:
    return {
        page
        for start, end in ranges
        for page in range(start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1)
    }
