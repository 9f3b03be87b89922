"""Split virtqueue: chains, indirect tables, event-idx and a hostile driver, in real guest RAM."""

import struct

import pytest

from arctern.machine.memory import RAM, AddressSpace
from arctern.testing.virtio import DESC, F_INDIRECT, F_NEXT, F_WRITE, Ring
from arctern.virtio import RingError, SplitVirtqueue, ram_runs, sg_read, sg_write

RAM_SIZE = 1 << 20


@pytest.fixture
def mem():
    return AddressSpace(RAM(RAM_SIZE))


def make(mem, num=8, legacy=True):
    vq = SplitVirtqueue(0, num, mem.ram)
    if legacy:
        ring = Ring.legacy(mem, num, 0x10000)
        vq.set_legacy_addr(0x10000)
    else:
        ring = Ring.modern(mem, num, 0x10000)
        vq.set_rings(ring.desc, ring.avail, ring.used)
    return vq, ring


@pytest.mark.parametrize("indirect", [False, True])
def test_pop_chain_then_push(mem, indirect):
    vq, ring = make(mem)
    sent = ring.add([b"header..", b"payload"], [16, 1], indirect=indirect)
    elem = vq.pop()
    assert elem.head == sent["head"]
    assert sg_read(mem, elem.out_sg) == b"header..payload"
    assert [length for _a, length in elem.in_sg] == [16, 1]
    assert sg_write(mem, elem.in_sg, b"R" * 17) == 17
    assert vq.pop() is None
    vq.push(elem, 17)
    assert ring.collect() == [(sent["head"], 17)]
    assert mem.read_bytes(sent["in"][0][0], 16) == b"R" * 16


def test_legacy_layout_matches_qemu(mem):
    vq, ring = make(mem, num=256)
    assert (vq.avail, vq.used) == (0x10000 + 4096, 0x10000 + 8192)
    assert (ring.avail, ring.used) == (vq.avail, vq.used)


def test_ring_wraps_over_65536_requests(mem):
    vq, ring = make(mem, num=4)
    vq.last_avail_idx = vq.used_idx = ring.avail_idx = ring.last_used = 0xFFFE
    ring.set_avail_idx(0xFFFE)
    for _ in range(4):
        sent = ring.add([b"x"], [1])
        vq.push(vq.pop(), 1)
        assert ring.collect() == [(sent["head"], 1)]
        ring.release(sent)
    assert vq.last_avail_idx == 2 and vq.used_idx == 2


def test_no_interrupt_flag_without_event_idx(mem):
    vq, ring = make(mem)
    ring.add([b"x"], [1])
    vq.push(vq.pop(), 1)
    assert vq.should_notify()
    ring.set_avail_flags(1)  # VRING_AVAIL_F_NO_INTERRUPT
    ring.add([b"x"], [1])
    vq.push(vq.pop(), 1)
    assert not vq.should_notify()


def test_event_idx_interrupts_only_when_used_event_passed(mem):
    vq, ring = make(mem)
    vq.event_idx = True
    for _ in range(3):
        ring.add([b"x"], [1])
    ring.set_used_event(2)  # "interrupt me once the used index passes 2"
    results = []
    for _ in range(3):
        vq.push(vq.pop(), 1)
        results.append(vq.should_notify())
    assert results == [True, False, True]  # first signal always; then only crossing 2
    assert ring.avail_event() == 3  # device published how far it consumed


def test_notification_suppression_flags(mem):
    vq, ring = make(mem)
    vq.set_notification(False)
    assert ring.used_flags() == 1  # VRING_USED_F_NO_NOTIFY
    vq.set_notification(True)
    assert ring.used_flags() == 0
    vq.event_idx = True
    ring.add([b"x"], [1])
    vq.set_notification(True)
    assert ring.avail_event() == 1


def hostile(mem, ring, head, entries):
    for i, (addr, length, flags, nxt) in entries.items():
        ring.write_desc(i, addr, length, flags, nxt)
    ring.publish(head)


@pytest.mark.parametrize(
    "entries, message",
    [
        ({0: (0x20000, 16, F_NEXT, 1), 1: (0x20000, 16, F_NEXT, 0)}, "looped"),
        ({0: (0x20000, 16, F_NEXT, 9)}, "next is 9"),
        ({0: (RAM_SIZE - 8, 16, 0, 0)}, "outside guest RAM"),
        ({0: (0x20000, 0, 0, 0)}, "zero sized"),
        ({0: (0x20000, 8, F_WRITE | F_NEXT, 1), 1: (0x20000, 8, 0, 0)}, "order"),
        ({0: (0x20000, 15, F_INDIRECT, 0)}, "indirect table size"),
        ({0: (0x20000, 16, F_INDIRECT | F_NEXT, 1)}, "NEXT"),
    ],
)
def test_hostile_chains_raise_ring_error(mem, entries, message):
    vq, ring = make(mem)
    hostile(mem, ring, 0, entries)
    with pytest.raises(RingError, match=message):
        vq.pop()


def test_nested_indirect_is_refused(mem):
    vq, ring = make(mem)
    mem.write_bytes(0x30000, DESC.pack(0x31000, 16, F_INDIRECT, 0))
    hostile(mem, ring, 0, {0: (0x30000, 16, F_INDIRECT, 0)})
    with pytest.raises(RingError, match="indirect descriptor in indirect"):
        vq.pop()


def test_avail_index_jump_and_bad_head(mem):
    vq, ring = make(mem)
    ring.set_avail_idx(9)
    with pytest.raises(RingError, match="avail index"):
        vq.pop()
    vq2, ring2 = make(AddressSpace(RAM(RAM_SIZE)))
    ring2.mem.write_bytes(ring2.avail + 4, struct.pack("<H", 8))
    ring2.set_avail_idx(1)
    with pytest.raises(RingError, match="index 8"):
        vq2.pop()


def test_rings_outside_ram_are_errors_not_exceptions(mem):
    vq = SplitVirtqueue(0, 8, mem.ram)
    vq.set_rings(RAM_SIZE + 0x1000, RAM_SIZE + 0x2000, RAM_SIZE + 0x3000)
    with pytest.raises(RingError):
        vq.pop()


def test_dma_marks_pages_dirty(mem):
    vq, ring = make(mem)
    sent = ring.add([b"x"], [8])
    elem = vq.pop()
    mem.ram.take_dirty()  # clear
    sg_write(mem, elem.in_sg, b"y" * 8)
    vq.push(elem, 8)
    dirty = {page for first, count in mem.ram.take_dirty() for page in range(first, first + count)}
    assert sent["in"][0][0] >> 12 in dirty and ring.used >> 12 in dirty


def test_ram_runs_merge_contiguous_buffers(mem):
    runs = list(ram_runs(mem.ram, [(0x1000, 0x200), (0x1200, 0x100), (0x3000, 0x10)]))
    assert [(offset, len(view)) for offset, view in runs] == [(0x1000, 0x300), (0x3000, 0x10)]
    runs[0][1][:4] = b"abcd"  # views are guest RAM itself
    assert mem.read_bytes(0x1000, 4) == b"abcd"
