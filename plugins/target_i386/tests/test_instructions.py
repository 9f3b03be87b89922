"""Per-instruction tests written in assembly: registers, memory and every defined flag.

Each case runs a snippet (assembled by keystone at 0x1000, ended by HLT) from
the given registers and checks the listed registers and the flags under
``mask`` (the flags the instruction defines).
"""

from __future__ import annotations

import pytest
from i386_guest import CODE

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH = CF | PF | AF | ZF | SF | OF
SZP = SF | ZF | PF

# (name, source, initial registers, expected registers, flags, flag mask)
CASES = [
    (
        "add-carry-zero",
        "add eax, ebx",
        {"eax": 0xFFFFFFFF, "ebx": 1},
        {"eax": 0},
        CF | ZF | PF | AF,
        ARITH,
    ),
    (
        "add-overflow",
        "add eax, 1",
        {"eax": 0x7FFFFFFF},
        {"eax": 0x80000000},
        OF | SF | AF | PF,
        ARITH,
    ),
    ("add8-high", "add ah, 0x90", {"eax": 0x7000}, {"eax": 0x0000}, CF | ZF | PF, ARITH),
    ("adc-carry-in", "stc\nadc eax, 0", {"eax": 0xFFFFFFFF}, {"eax": 0}, CF | ZF | PF | AF, ARITH),
    ("sub-borrow", "sub eax, 1", {"eax": 0}, {"eax": 0xFFFFFFFF}, CF | SF | PF | AF, ARITH),
    ("sbb-borrow-in", "stc\nsbb eax, 0", {"eax": 0}, {"eax": 0xFFFFFFFF}, CF | SF | PF | AF, ARITH),
    (
        "cmp-signed",
        "cmp eax, ebx",
        {"eax": 0x80000000, "ebx": 1},
        {"eax": 0x80000000},
        OF | AF | PF,
        ARITH,
    ),
    ("cmp16", "cmp ax, 0x8000", {"eax": 0x7FFF}, {}, CF | OF | SF | PF, ARITH),
    (
        "inc-overflow",
        "inc eax",
        {"eax": 0x7FFFFFFF},
        {"eax": 0x80000000},
        OF | SF | AF | PF,
        ARITH & ~CF,
    ),
    ("inc-keeps-cf", "stc\ninc eax", {"eax": 0}, {"eax": 1}, CF, ARITH),
    ("dec-overflow", "dec al", {"eax": 0x80}, {"eax": 0x7F}, OF | AF, ARITH & ~CF),
    ("dec-zero", "clc\ndec ecx", {"ecx": 1}, {"ecx": 0}, ZF | PF, ARITH),
    ("neg-overflow", "neg eax", {"eax": 0x80000000}, {"eax": 0x80000000}, OF | SF | CF | PF, ARITH),
    ("neg-zero", "neg eax", {"eax": 0}, {"eax": 0}, ZF | PF, ARITH),
    ("neg8", "neg bl", {"ebx": 1}, {"ebx": 0xFF}, CF | SF | PF | AF, ARITH),
    ("not-keeps-flags", "stc\nnot eax", {"eax": 0x0F0F0F0F}, {"eax": 0xF0F0F0F0}, CF, CF),
    (
        "and-clears-cf-of",
        "stc\nand eax, 0x80000000",
        {"eax": 0xFFFFFFFF},
        {"eax": 0x80000000},
        SF | PF,
        CF | OF | SF | ZF | PF,
    ),
    ("xor-self", "xor eax, eax", {"eax": 1234}, {"eax": 0}, ZF | PF, CF | OF | SF | ZF | PF),
    ("test-parity", "test al, 3", {"eax": 3}, {"eax": 3}, PF, CF | OF | SF | ZF | PF),
    ("shl-0-keeps-flags", "stc\nmov cl, 0\nshl eax, cl", {"eax": 5}, {"eax": 5}, CF, ARITH & ~AF),
    (
        "shl-1",
        "shl eax, 1",
        {"eax": 0xC0000000},
        {"eax": 0x80000000},
        CF | SF | PF,
        CF | OF | SF | ZF | PF,
    ),
    (
        "shl-1-of",
        "shl eax, 1",
        {"eax": 0x40000000},
        {"eax": 0x80000000},
        OF | SF | PF,
        CF | OF | SF | ZF | PF,
    ),
    ("shl-31", "shl eax, 31", {"eax": 3}, {"eax": 0x80000000}, CF | SF | PF, CF | SF | ZF | PF),
    ("shl-32-is-0", "stc\nmov cl, 32\nshl eax, cl", {"eax": 3}, {"eax": 3}, CF, CF | SF | ZF | PF),
    ("shl8-by-9", "mov cl, 9\nshl al, cl", {"eax": 0xFF}, {"eax": 0}, ZF | PF, SF | ZF | PF),
    (
        "shr-1-of",
        "shr eax, 1",
        {"eax": 0x80000001},
        {"eax": 0x40000000},
        CF | OF | PF,
        CF | OF | SF | ZF | PF,
    ),
    ("shr-31", "shr eax, 31", {"eax": 0xC0000000}, {"eax": 1}, CF, CF | SF | ZF | PF),
    (
        "sar-1",
        "sar eax, 1",
        {"eax": 0x80000001},
        {"eax": 0xC0000000},
        CF | SF | PF,
        CF | OF | SF | ZF | PF,
    ),
    ("sar-31", "sar eax, 31", {"eax": 0x80000000}, {"eax": 0xFFFFFFFF}, SF | PF, CF | SF | ZF | PF),
    (
        "sar8-by-cl-20",
        "mov cl, 20\nsar bl, cl",
        {"ebx": 0x80},
        {"ebx": 0xFF},
        CF | SF | PF,
        CF | SF | ZF | PF,
    ),
    ("rol-1", "rol eax, 1", {"eax": 0x80000000}, {"eax": 1}, CF | OF, CF | OF),
    ("ror-1", "ror eax, 1", {"eax": 1}, {"eax": 0x80000000}, CF | OF, CF | OF),
    (
        "rol-32-no-change",
        "clc\nmov cl, 32\nrol eax, cl",
        {"eax": 0x80000001},
        {"eax": 0x80000001},
        0,
        CF,
    ),
    ("rol8-by-8", "clc\nrol al, 8", {"eax": 0x81}, {"eax": 0x81}, CF, CF),
    ("rcl-1", "stc\nrcl eax, 1", {"eax": 0x80000000}, {"eax": 1}, CF | OF, CF | OF),
    ("rcr-1", "stc\nrcr eax, 1", {"eax": 1}, {"eax": 0x80000000}, CF | OF, CF | OF),
    ("rcl8-9", "clc\nmov cl, 9\nrcl al, cl", {"eax": 0x55}, {"eax": 0x55}, 0, CF),
    (
        "shld-4",
        "shld eax, ebx, 4",
        {"eax": 0x12345678, "ebx": 0x9ABCDEF0},
        {"eax": 0x23456789},
        CF,
        CF | SF | ZF | PF,
    ),
    (
        "shrd-4",
        "shrd eax, ebx, 4",
        {"eax": 0x12345678, "ebx": 0x9ABCDEF0},
        {"eax": 0x01234567},
        CF,
        CF | SF | ZF,
    ),
    ("shrd-0", "stc\nshrd eax, ebx, 0", {"eax": 1, "ebx": 2}, {"eax": 1}, CF, CF),
    ("mul-32", "mul ebx", {"eax": 0x80000000, "ebx": 4}, {"eax": 0, "edx": 2}, CF | OF, CF | OF),
    ("mul-fits", "mul ebx", {"eax": 3, "ebx": 4, "edx": 99}, {"eax": 12, "edx": 0}, 0, CF | OF),
    ("mul-8", "mul bl", {"eax": 0xFF, "ebx": 0xFF}, {"eax": 0xFE01}, CF | OF, CF | OF),
    (
        "imul-1op-neg",
        "imul ebx",
        {"eax": 0xFFFFFFFF, "ebx": 2},
        {"eax": 0xFFFFFFFE, "edx": 0xFFFFFFFF},
        0,
        CF | OF,
    ),
    (
        "imul-2op-overflow",
        "imul eax, ebx",
        {"eax": 0x10000, "ebx": 0x10000},
        {"eax": 0},
        CF | OF,
        CF | OF,
    ),
    ("imul-3op", "imul eax, ebx, -3", {"ebx": 5}, {"eax": 0xFFFFFFF1}, 0, CF | OF),
    (
        "imul16-3op",
        "imul ax, bx, 0x4000",
        {"eax": 0xAAAA0000, "ebx": 4},
        {"eax": 0xAAAA0000},
        CF | OF,
        CF | OF,
    ),
    ("div-32", "div ebx", {"edx": 1, "eax": 0, "ebx": 3}, {"eax": 0x55555555, "edx": 1}, 0, 0),
    ("div-8", "div bl", {"eax": 1000, "ebx": 7}, {"eax": (1000 % 7) << 8 | 1000 // 7}, 0, 0),
    (
        "idiv-truncates",
        "cdq\nidiv ebx",
        {"eax": 0xFFFFFFF9, "ebx": 2},
        {"eax": 0xFFFFFFFD, "edx": 0xFFFFFFFF},
        0,
        0,
    ),
    ("idiv-16", "cwd\nidiv bx", {"eax": 0xFFF9, "ebx": 0xFFFE}, {"eax": 3, "edx": 0xFFFF}, 0, 0),
    ("cbw", "cbw", {"eax": 0x12345680}, {"eax": 0x1234FF80}, 0, 0),
    ("cwde", "cwde", {"eax": 0x12348000}, {"eax": 0xFFFF8000}, 0, 0),
    ("cdq", "cdq", {"eax": 0x80000000, "edx": 5}, {"edx": 0xFFFFFFFF}, 0, 0),
    ("cwd", "cwd", {"eax": 0x7FFF, "edx": 0x12345678}, {"edx": 0x12340000}, 0, 0),
    ("movzx", "movzx eax, bh", {"ebx": 0x8000}, {"eax": 0x80}, 0, 0),
    ("movsx", "movsx eax, bx", {"ebx": 0x8000}, {"eax": 0xFFFF8000}, 0, 0),
    ("lea-sib", "lea eax, [ebx + ecx*8 - 4]", {"ebx": 0x100, "ecx": 2}, {"eax": 0x10C}, 0, 0),
    ("lea-16", "lea ax, [ebx + 0xffff]", {"eax": 0x11110000, "ebx": 2}, {"eax": 0x11110001}, 0, 0),
    ("bswap", "bswap eax", {"eax": 0x12345678}, {"eax": 0x78563412}, 0, 0),
    ("bt", "bt eax, 33", {"eax": 2}, {"eax": 2}, CF, CF),
    ("bts", "bts eax, ecx", {"eax": 0, "ecx": 31}, {"eax": 0x80000000}, 0, CF),
    ("btr", "btr eax, 0", {"eax": 1}, {"eax": 0}, CF, CF),
    ("btc", "btc ax, 15", {"eax": 0}, {"eax": 0x8000}, 0, CF),
    ("bsf", "bsf eax, ebx", {"ebx": 0x80}, {"eax": 7}, 0, ZF),
    ("bsr", "bsr eax, ebx", {"ebx": 0x80000001}, {"eax": 31}, 0, ZF),
    ("bsf-zero-keeps-dest", "bsf eax, ebx", {"eax": 77, "ebx": 0}, {"eax": 77}, ZF, ZF),
    (
        "setcc",
        "cmp eax, ebx\nsetl cl\nsetb ch",
        {"eax": 0xFFFFFFFF, "ebx": 1, "ecx": 0},
        {"ecx": 0x0001},
        0,
        0,
    ),
    ("cmov-taken", "cmp eax, eax\ncmove ebx, ecx", {"ebx": 1, "ecx": 2}, {"ebx": 2}, 0, 0),
    (
        "cmov-not-taken",
        "cmp eax, 1\ncmove ebx, ecx",
        {"eax": 0, "ebx": 1, "ecx": 2},
        {"ebx": 1},
        0,
        0,
    ),
    ("xchg", "xchg eax, ebx", {"eax": 1, "ebx": 2}, {"eax": 2, "ebx": 1}, 0, 0),
    ("xchg8", "xchg al, ah", {"eax": 0x1234}, {"eax": 0x3412}, 0, 0),
    ("xadd", "xadd eax, ebx", {"eax": 5, "ebx": 7}, {"eax": 12, "ebx": 5}, PF, ARITH),
    (
        "cmpxchg-equal",
        "cmpxchg ebx, ecx",
        {"eax": 5, "ebx": 5, "ecx": 9},
        {"eax": 5, "ebx": 9},
        ZF | PF,
        ARITH,
    ),
    (
        "cmpxchg-differ",
        "cmpxchg ebx, ecx",
        {"eax": 5, "ebx": 6, "ecx": 9},
        {"eax": 6, "ebx": 6},
        CF | SF | PF | AF,
        ARITH,
    ),
    ("lahf", "stc\nlahf", {"eax": 0}, {"eax": 0x0300}, 0, 0),
    ("sahf", "sahf", {"eax": 0xD500}, {}, SF | ZF | AF | PF | CF, ARITH & ~OF),
    ("cmc", "stc\ncmc", {}, {}, 0, CF),
    (
        "pushf-popf",
        "pushfd\npop eax\nor eax, 0x8c1\npush eax\npopfd",
        {},
        {},
        OF | SF | ZF | CF,
        ARITH,
    ),
    (
        "pusha-popa",
        "pushad\nmov eax, 0\nmov edi, 0\npopad",
        {"eax": 1, "edi": 2},
        {"eax": 1, "edi": 2},
        0,
        0,
    ),
    (
        "enter-leave",
        "enter 16, 0\nmov ecx, esp\nleave",
        {"ebp": 0x1234},
        {"ebp": 0x1234, "ecx": 0x80000 - 4 - 16, "esp": 0x80000},
        0,
        0,
    ),
    ("loop", "mov ecx, 5\nl: add eax, 2\nloop l", {"eax": 0}, {"eax": 10, "ecx": 0}, 0, 0),
    (
        "loopne",
        "mov ecx, 10\nl: inc eax\ncmp eax, 3\nloopne l",
        {"eax": 0},
        {"eax": 3, "ecx": 7},
        0,
        0,
    ),
    ("jecxz", "jecxz skip\nmov eax, 1\nskip:", {"ecx": 0, "eax": 0}, {"eax": 0}, 0, 0),
    (
        "call-ret",
        "call f\njmp done\nf: mov eax, 42\nret\ndone:",
        {},
        {"eax": 42, "esp": 0x80000},
        0,
        0,
    ),
    ("ret-imm", "push 1\npush 2\ncall f\njmp done\nf: ret 8\ndone:", {}, {"esp": 0x80000}, 0, 0),
    (
        "call-indirect",
        "lea ebx, [f]\ncall ebx\njmp done\nf: mov eax, 7\nret\ndone:",
        {},
        {"eax": 7},
        0,
        0,
    ),
    (
        "xlat",
        "mov dword ptr [0x3000], 0x44332211\nxlatb",
        {"ebx": 0x3000, "eax": 2},
        {"eax": 0x33},
        0,
        0,
    ),
    ("daa", "add al, 0x27\ndaa", {"eax": 0x15}, {"eax": 0x42}, 0, CF),
    ("aam", "aam", {"eax": 0x0063}, {"eax": 0x0909}, 0, 0),
    ("aad", "aad", {"eax": 0x0909}, {"eax": 0x0063}, 0, 0),
    (
        "cpuid-vendor",
        "xor eax, eax\ncpuid",
        {},
        {"ebx": 0x756E6547, "edx": 0x49656E69, "ecx": 0x6C65746E},
        0,
        0,
    ),
    (
        "nop-forms",
        "nop\nnop dword ptr [eax + eax]\nnop word ptr [eax + eax]\npause",
        {"eax": 1},
        {"eax": 1},
        0,
        0,
    ),
]


@pytest.mark.parametrize(
    ("source", "before", "after", "flags", "mask"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_instruction(guest, source, before, after, flags, mask):
    guest.run(source, **before)
    for name, value in after.items():
        assert guest.reg(name) == value, f"{name} = {guest.reg(name):#x}, want {value:#x}"
    assert guest.cpu.get_eflags() & mask == flags, f"flags {guest.cpu.get_eflags():#x}"


def test_string_rep_ecx_zero_does_nothing(guest):
    guest.run("mov ecx, 0\nrep stosd", eax=0x11223344, edi=0x3000, ecx=0)
    assert guest.mem(0x3000) == 0
    assert guest.reg("edi") == 0x3000


@pytest.mark.parametrize("df", [0, 1])
def test_rep_movs_both_directions(guest, df):
    ram = guest.machine.ram
    ram.write(0x3000, bytes(range(64)))
    start = 0x3000 if not df else 0x3000 + 60
    dest = 0x4000 if not df else 0x4000 + 60
    guest.run(
        ("std\n" if df else "cld\n") + "rep movs dword ptr es:[edi], dword ptr [esi]\ncld",
        esi=start,
        edi=dest,
        ecx=16,
    )
    assert ram.read(0x4000, 64) == bytes(range(64))
    step = -4 if df else 4
    assert guest.reg("esi") == start + 16 * step
    assert guest.reg("ecx") == 0


def test_rep_movsb_overlapping_forward_replicates(guest):
    """memmove semantics would be wrong here: x86 copies byte by byte, forward."""
    ram = guest.machine.ram
    ram.write(0x3000, b"ab" + bytes(14))
    guest.run("cld\nrep movsb", esi=0x3000, edi=0x3002, ecx=14)
    assert ram.read(0x3000, 16) == b"abababababababab"


def test_repne_scasb_finds_terminator(guest):
    ram = guest.machine.ram
    ram.write(0x3000, b"hello\0world")
    guest.run("xor eax, eax\nmov ecx, -1\ncld\nrepne scasb\nnot ecx\ndec ecx", edi=0x3000)
    assert guest.reg("ecx") == 5
    assert guest.reg("edi") == 0x3006


def test_repe_cmpsb_stops_at_difference(guest):
    ram = guest.machine.ram
    ram.write(0x3000, b"abcdef")
    ram.write(0x4000, b"abcxef")
    guest.run("cld\nrepe cmpsb", esi=0x3000, edi=0x4000, ecx=6)
    assert guest.reg("ecx") == 2
    assert guest.reg("esi") == 0x3004
    assert not guest.cpu.get_eflags() & ZF


def test_stos_with_df_set_goes_down(guest):
    guest.run("std\nstosd\nstosd\ncld", eax=0xAABBCCDD, edi=0x3008)
    assert guest.mem(0x3008) == 0xAABBCCDD and guest.mem(0x3004) == 0xAABBCCDD
    assert guest.reg("edi") == 0x3000


def test_lock_cmpxchg8b_both_ways(guest):
    ram = guest.machine.ram
    ram.write(0x3000, (0x1111111122222222).to_bytes(8, "little"))
    guest.run(
        "lock cmpxchg8b qword ptr [0x3000]", edx=0x11111111, eax=0x22222222, ecx=0xAAAA, ebx=0xBBBB
    )
    assert ram.read(0x3000, 8) == (0x0000AAAA0000BBBB).to_bytes(8, "little")
    assert guest.cpu.get_eflags() & ZF
    guest.run("lock cmpxchg8b qword ptr [0x3000]", edx=1, eax=2)
    assert (guest.reg("edx"), guest.reg("eax")) == (0xAAAA, 0xBBBB)
    assert not guest.cpu.get_eflags() & ZF


def test_segment_override_fs_uses_its_base(guest):
    cpu = guest.cpu
    cpu.set_segment(4, 0x18, 0x5000, 0xFFFFFFFF, 0xCF9300)
    guest.run(
        "mov eax, dword ptr fs:[0x10]\nmov dword ptr fs:[0x20], 0x99\n"
        "mov dword ptr fs:[ebx + 0x30], 0x77\nadd dword ptr fs:[ebx + esi*4 + 0x30], 1",
        ebx=0x100, esi=0,
    )
    assert guest.mem(0x5020) == 0x99
    assert guest.mem(0x5130) == 0x78


def test_in_out_reach_port_handlers(guest):
    seen = []

    class Port:
        def port_read(self, port, size):
            return 0xA5A5A5A5 & ((1 << (8 * size)) - 1)

        def port_write(self, port, size, value):
            seen.append((port, size, value))

    guest.machine.io.add(0x3F8, 8, Port(), "uart")
    guest.machine.io.add(0x70, 2, Port(), "rtc")
    guest.run("mov dx, 0x3f8\nin al, dx\nout dx, al\nin ax, 0x70\nout 0x71, ax", eax=0)
    assert seen == [(0x3F8, 1, 0xA5), (0x71, 2, 0xA5A5)]
    assert guest.reg("eax") == 0xA5A5


def test_mmio_loads_and_stores_reach_the_device(guest):
    log = []

    class Regs:
        def mmio_read(self, offset, size):
            log.append(("r", offset, size))
            return 0x12345678 & ((1 << (8 * size)) - 1)

        def mmio_write(self, offset, size, value):
            log.append(("w", offset, size, value))

    guest.machine.address_space.add_mmio(0xFEB00000, 0x200, Regs(), "dev")
    guest.run(
        "mov eax, dword ptr [0xfeb00010]\nmov byte ptr [0xfeb00004], 7\n"
        "add dword ptr [0xfeb00008], 1"
    )
    assert guest.reg("eax") == 0x12345678
    assert log == [("r", 0x10, 4), ("w", 4, 1, 7), ("r", 8, 4), ("w", 8, 4, 0x12345679)]


def test_long_rep_over_mmio_pauses_and_resumes(guest):
    """A REP that cannot take the bulk path yields the slice, then completes."""
    writes = []

    class Sink:
        def mmio_read(self, offset, size):
            return 0

        def mmio_write(self, offset, size, value):
            writes.append(value)

    guest.machine.address_space.add_mmio(0xFEB00000, 0x100000, Sink(), "sink")
    guest.load("rep stosb\nhlt")
    guest.cpu.eip = CODE
    guest.cpu.r[0], guest.cpu.r[1], guest.cpu.r[7] = 0x5A, 40000, 0xFEB00000
    first = guest.cpu.run(1000)
    assert not guest.cpu.halted and guest.cpu.eip == CODE and 0 < first
    while not guest.cpu.halted:
        guest.cpu.run(1000)
    assert len(writes) == 40000 and set(writes) == {0x5A}
    assert guest.reg("ecx") == 0 and guest.reg("edi") == 0xFEB00000 + 40000


def test_cpuid_leaf1_matches_the_model_and_omits_fpu_and_sse():
    from arctern_target_i386.cpu import PentiumCPU
    from i386_guest import Guest

    guest = Guest()
    guest.run("mov eax, 1\ncpuid")
    assert guest.reg("eax") == 0x663
    features = guest.reg("edx")
    assert features & (1 << 15) and features & (1 << 8) and features & (1 << 4)  # cmov cx8 tsc
    assert not features & (1 | 1 << 23 | 1 << 25 | 1 << 26)  # no fpu, mmx, sse, sse2
    pentium = PentiumCPU(guest.machine)
    assert pentium.cpuid(1, 0)[0] == 0x543 and not pentium.cpuid(1, 0)[3] & (1 << 15)


def test_16_bit_addressing_with_the_0x67_prefix(guest):
    ram = guest.machine.ram
    ram.write(0x3008, (0xCAFEBABE).to_bytes(4, "little"))
    ram.write(0x5000, (0x11223344).to_bytes(4, "little"))
    guest.run(
        "mov eax, dword ptr [bx + si + 4]\nmov ecx, dword ptr [bp + di]\nlea dx, [bx + di + 0x10]",
        ebx=0xFFFF3000, esi=0x10004, ebp=0x4FF0, edi=0x10, edx=0xAAAA0000,
    )
    assert guest.reg("eax") == 0xCAFEBABE  # (bx + si + 4) & 0xffff = 0x3008
    assert guest.reg("ecx") == 0x11223344
    assert guest.reg("edx") == 0xAAAA3020


def test_addresses_wrap_at_4_gib_with_positive_displacements(guest):
    """base + index*scale + disp past 4 GiB wraps to low memory (the RAM fast path
    leaves the wrap to its fallback), for loads, stores, ALU operands and in a loop."""
    ram = guest.machine.ram
    ram.write(0x3008, (0xCAFEBABE).to_bytes(4, "little"))
    ram.write(0x3010, bytes(range(1, 9)))
    guest.run(
        "mov eax, dword ptr [ebx + 0x3010]\nmov dword ptr [ebx + esi*4 + 0x3020], 0x55667788\n"
        "add dword ptr [ebx + 0x3010], 1\nmovzx ecx, byte ptr [esi*4 + ebx + 0x3013]\n"
        "mov edx, 0\nnext:\nadd dl, byte ptr [ebx + edi + 0x3018]\ninc edi\ncmp edi, 0x8\n"
        "jne next",
        ebx=0xFFFFFFF8, esi=2, edi=0,
    )
    assert guest.reg("eax") == 0xCAFEBABE
    assert guest.mem(0x3020) == 0x55667788
    assert guest.mem(0x3008) == 0xCAFEBABF
    assert guest.reg("ecx") == 4  # the byte at 0x3013
    assert guest.reg("edx") == sum(range(1, 9))


def test_dword_table_lookups_by_index(guest):
    """[index*4 + table] loads (the word-view fast path): in RAM, wrapping past 4 GiB,
    and from MMIO past the end of RAM."""

    class Regs:
        def mmio_read(self, offset, size):
            return 0xD0000000 | offset

        def mmio_write(self, offset, size, value):
            pass

    guest.machine.address_space.add_mmio(0xFEB00000, 0x100, Regs(), "dev")
    ram = guest.machine.ram
    ram.write(0x3000, b"".join((0x1000 * k + 7).to_bytes(4, "little") for k in range(16)))
    guest.run(
        "mov eax, dword ptr [ecx*4 + 0x3000]\nmov edx, dword ptr [esi*4 + 0x3010]\n"
        "mov edi, dword ptr [ebx*4 + 0xfeb00000]\nmov ebp, 0x11\nxor ebp, dword ptr [ecx*4]",
        ecx=5, esi=0x3FFFFFFF, ebx=3,
    )
    assert guest.reg("eax") == 0x5007
    assert guest.reg("edx") == 0x3007  # 0xfffffffc + 0x3010 wraps to 0x300c
    assert guest.reg("edi") == 0xD000000C
    assert guest.reg("ebp") == 0x11 ^ guest.mem(20)
