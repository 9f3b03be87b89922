"""The target-independent parts of a translating CPU: block cache, softmmu, fault positions."""

from __future__ import annotations

import pytest

from arctern.cpu.softmmu import TLB, PhysicalMemory
from arctern.cpu.tbcache import BlockCache, TranslatedBlock
from arctern.cpu.translate import Source, compile_block, fault_index
from arctern.machine.memory import RAM, AddressSpace


def _block(key: int, start: int, end: int) -> TranslatedBlock:
    return TranslatedBlock(key, lambda lim, pc: pc, start, 1, [(start, end)])


@pytest.fixture
def ram() -> RAM:
    return RAM(64 << 10)


def test_cache_flags_code_pages_and_drops_only_overwritten_blocks(ram):
    cache = BlockCache(ram)
    first, second = _block(1, 0x1000, 0x1010), _block(2, 0x1800, 0x1820)
    cache.insert(first)
    cache.insert(second)
    assert ram.code[1] == 1
    ram.write(0x1400, b"data sharing the page")  # no block there: both stay
    assert set(cache.blocks) == {1, 2}
    ram.write(0x1808, b"\x90")
    assert set(cache.blocks) == {1}
    assert ram.code[1] == 1
    ram.write(0x1000, b"\x90")
    assert not cache.blocks and ram.code[1] == 0


def test_block_spanning_two_pages_is_dropped_by_a_write_to_either(ram):
    cache = BlockCache(ram)
    cache.insert(TranslatedBlock(7, lambda lim, pc: pc, 0x1FF8, 1, [(0x1FF8, 0x2008)]))
    assert ram.code[1] and ram.code[2]
    generation = cache.generation
    ram.write(0x2004, b"\x00")
    assert not cache.blocks and cache.generation > generation
    assert not ram.code[1] and not ram.code[2]


def test_replacing_a_key_and_flush(ram):
    cache = BlockCache(ram)
    cache.insert(_block(1, 0x3000, 0x3004))
    cache.insert(_block(1, 0x5000, 0x5004))
    assert not ram.code[3] and ram.code[5]
    cache.flush()
    assert not cache.blocks and not any(ram.code)
    cache.close()
    cache.insert(_block(2, 0x6000, 0x6004))
    ram.write(0x6000, b"\x00")  # no longer listening: the block stays
    assert 2 in cache.blocks


class _Device:
    def __init__(self):
        self.log = []

    def mmio_read(self, offset, size):
        self.log.append(("r", offset, size))
        return 0xAB

    def mmio_write(self, offset, size, value):
        self.log.append(("w", offset, size, value))


def test_physical_memory_routes_ram_rom_and_mmio(ram):
    space = AddressSpace(ram)
    device = _Device()
    space.add_mmio(0x100000, 0x100, device, "dev")
    space.add_rom(0x200000, b"\x11\x22\x33\x44", "rom")
    phys = PhysicalMemory(space, BlockCache(ram))
    assert not phys.write(0x10, 4, 0xDEADBEEF)
    assert phys.read(0x10, 4) == 0xDEADBEEF and ram.dirty[0]
    assert phys.read(0x100004, 1) == 0xAB
    phys.write(0x100008, 2, 0x1234)
    assert device.log == [("r", 4, 1), ("w", 8, 2, 0x1234)]
    assert phys.read_bytes(0x200000, 4) == b"\x11\x22\x33\x44"
    phys.write(0x200000, 1, 0)  # ROM ignores writes
    assert phys.read(0x200000, 1) == 0x11


def test_store_reports_code_overwrite_and_marks_both_pages_dirty(ram):
    cache = BlockCache(ram)
    phys = PhysicalMemory(AddressSpace(ram), cache)
    list(ram.take_dirty())  # start from a clean dirty log
    cache.insert(_block(1, 0x2000, 0x2010))
    assert phys.write(0x1FFE, 4, 0) is True  # straddles into the code page
    assert ram.dirty[1] and ram.dirty[2]
    assert not cache.blocks
    assert phys.write(0x2000, 4, 0) is False


def test_tlb_maps_per_kind_and_privilege():
    tlb = TLB()
    tlb.fill(0x12345, 0, False, 0x7000)
    tlb.fill(0x12345, 1, True, 0x8000)
    assert tlb.lookup(0x12345, 0, False) == 0x7000
    assert tlb.lookup(0x12345, 1, False) is None
    assert tlb.lookup(0x12345, 1, True) == 0x8000
    tlb.flush_page(0x12345ABC)
    assert tlb.lookup(0x12345, 0, False) is None
    tlb.fill(1, 2, False, 0x1000)
    tlb.flush()
    assert tlb.lookup(1, 2, False) is None


def test_fault_index_finds_the_raising_instruction():
    source = Source()
    source.emit("def tb(lim, pc):")
    source.depth = 1
    for k in range(3):
        source.mark()
        source.emit(f"x{k} = {k}", f"if lim == {k}: raise ValueError({k})")
    source.emit("return pc")
    fn = compile_block(source.text(), "<test block>", {})
    lines = list(source.marks)
    block = TranslatedBlock(0, fn, 0, 3, [], lines, [10, 11, 12], [11, 12, 13])
    for k in range(3):
        with pytest.raises(ValueError) as info:
            fn(k, 0)
        assert fault_index(info.value, block) == k
    assert fn(9, 42) == 42
