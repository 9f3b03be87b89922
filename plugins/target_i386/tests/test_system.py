"""Exceptions through the IDT, interrupts, HLT, paging, self-modifying code, state, tracing."""

from __future__ import annotations

import logging
import random

import pytest
from i386_guest import CODE, IDT, STACK, Guest, assemble

from arctern.errors import MachineError


@pytest.fixture
def sys_guest() -> Guest:
    guest = Guest()
    guest.install_idt()
    return guest


def _frame(guest: Guest, words: int) -> list[int]:
    esp = guest.reg("esp")
    return [guest.mem(esp + 4 * k) for k in range(words)]


@pytest.mark.parametrize(
    ("prefix", "faulting", "vector"),
    [
        pytest.param("xor ecx, ecx", "div ecx", 0, id="div-by-zero"),
        pytest.param("mov al, 1\nmov bl, 0", "div bl", 0, id="div8-by-zero"),
        pytest.param("mov edx, 1\nmov ecx, 1", "div ecx", 0, id="div-quotient-overflow"),
        pytest.param("mov eax, 0x80000000\ncdq\nmov ecx, -1", "idiv ecx", 0, id="idiv-overflow"),
        pytest.param("", "aam 0", 0, id="aam-zero"),
        pytest.param("nop", "ud2", 6, id="ud2"),
        pytest.param("", "fld1", 6, id="x87-is-ud"),
        pytest.param("", "xorps xmm0, xmm0", 6, id="sse-is-ud"),
        pytest.param("", ".byte 0xf0, 0x01, 0xc0", 6, id="lock-on-register-is-ud"),
        pytest.param("", ".byte 0x0f, 0x0f, 0xc0, 0x00", 6, id="3dnow-is-ud"),
        pytest.param("", ".byte 0x66" + ", 0x66" * 14 + ", 0x90", 13, id="longer-than-15-bytes"),
    ],
)
def test_fault_is_delivered_with_eip_of_the_faulting_instruction(
    sys_guest, prefix, faulting, vector
):
    sys_guest.run(f"{prefix}\n{faulting}")
    assert sys_guest.vector == vector
    eip, cs, eflags = _frame(sys_guest, 3 if vector != 13 else 4)[-3:]
    assert eip == CODE + len(assemble(prefix) if prefix else b"")
    assert cs == 0x08
    assert eflags & 2


def test_int3_and_int_n_push_the_next_eip(sys_guest):
    code = sys_guest.run("nop\nint3")
    assert sys_guest.vector == 3
    assert _frame(sys_guest, 1)[0] == CODE + 2
    assert code.halted
    sys_guest.run("int 0x15")
    assert sys_guest.vector == 0x15
    assert _frame(sys_guest, 1)[0] == CODE + 2


def test_into_traps_only_with_overflow(sys_guest):
    sys_guest.run("mov eax, 0x7fffffff\nadd eax, 1\ninto")
    assert sys_guest.vector == 4
    sys_guest.clear_vector()
    sys_guest.run("mov eax, 1\nadd eax, 1\ninto")
    assert sys_guest.vector == 0xFFFFFFFF


def test_fault_registers_are_those_before_the_instruction(sys_guest):
    sys_guest.run("mov eax, 1\nmov edx, 7\nadd ebx, 5\nxor ecx, ecx\ndiv ecx")
    assert (sys_guest.reg("eax"), sys_guest.reg("edx"), sys_guest.reg("ebx")) == (1, 7, 5)


def test_gp_with_error_code_for_bad_segment_selector(sys_guest):
    sys_guest.run("mov ax, 0x28\nmov ds, ax")
    assert sys_guest.vector == 13
    code, eip = _frame(sys_guest, 2)
    assert code == 0x28
    assert eip == CODE + 4


def test_segment_load_checks_descriptor_type_and_presence(sys_guest):
    sys_guest.set_gdt([0x00CF12000000FFFF, 0x00CF9A000000FFFF])  # 0x20 not present, 0x28 code
    sys_guest.run("mov ax, 0x20\nmov es, ax")
    assert sys_guest.vector == 11 and _frame(sys_guest, 1)[0] == 0x20
    sys_guest.clear_vector()
    sys_guest.run("mov ax, 0x28\nmov ss, ax")  # code segment into SS
    assert sys_guest.vector == 13 and _frame(sys_guest, 1)[0] == 0x28
    sys_guest.clear_vector()
    sys_guest.run("mov ax, 0x10\nmov es, ax\nmov bx, es")
    assert sys_guest.vector == 0xFFFFFFFF and sys_guest.reg("ebx") & 0xFFFF == 0x10


def test_int_beyond_the_idt_limit_is_gp_with_the_vector_in_the_error_code(sys_guest):
    sys_guest.cpu.idt = [IDT, 14 * 8 - 1]
    sys_guest.run("int 0x20")
    assert sys_guest.vector == 13 and _frame(sys_guest, 1)[0] == 0x20 * 8 + 2


def test_fault_while_delivering_a_fault_is_double_fault(sys_guest):
    sys_guest.cpu.idt = [IDT, 9 * 8 - 1]  # #GP's own gate is missing
    sys_guest.run("int 0x20")
    assert sys_guest.vector == 8 and _frame(sys_guest, 1)[0] == 0


def test_fault_while_delivering_double_fault_is_a_triple_fault(sys_guest):
    sys_guest.cpu.idt = [IDT, 7 * 8 - 1]
    sys_guest.load("int 0x20")
    sys_guest.cpu.eip = CODE
    sys_guest.cpu.run(100)
    assert sys_guest.cpu.halted and sys_guest.cpu.shutdown
    assert sys_guest.vector == 0xFFFFFFFF


def test_nm_when_cr0_ts_set_for_fpu(sys_guest):
    sys_guest.cpu.cr[0] |= 8
    sys_guest.run("fld1")
    assert sys_guest.vector == 7
    sys_guest.clear_vector()
    sys_guest.run("fwait")  # WAIT needs MP as well
    assert sys_guest.vector == 0xFFFFFFFF
    sys_guest.cpu.cr[0] |= 2
    sys_guest.run("fwait")
    assert sys_guest.vector == 7


USER_CODE = CODE + 0x100


def _to_ring3(guest: Guest, user_source: str, eflags: int) -> None:
    """IRET to ring 3 at USER_CODE (user code 0x23, data 0x2b, stack 0x70000) with ``eflags``.

    GDT: 0x20 user code, 0x28 user data, 0x30 the TSS at 0x800 giving the ring-0
    stack SS:ESP = 0x10:STACK for the interrupt that brings the CPU back.
    """
    ram = guest.machine.ram
    guest.set_gdt([0x00CFFA000000FFFF, 0x00CFF2000000FFFF, 0x0000890000000067 | (0x800 << 16)])
    ram.write(0x800 + 4, STACK.to_bytes(4, "little") + (0x10).to_bytes(4, "little"))
    guest.cpu.h_ltr(0x30)
    ram.write(USER_CODE, assemble(user_source, USER_CODE))
    guest.run(f"push 0x2b\npush 0x70000\npush {eflags:#x}\npush 0x23\npush {USER_CODE}\niretd")


def test_privileged_instruction_in_ring3_is_gp(sys_guest):
    cpu = sys_guest.cpu
    user = USER_CODE
    _to_ring3(sys_guest, "hlt", 0x202)
    assert sys_guest.vector == 13
    err, eip, cs, eflags, esp, ss = _frame(sys_guest, 6)
    assert (err, eip, cs, esp, ss) == (0, user, 0x23, 0x70000, 0x2B)
    assert cpu.cpl == 0 and cpu.sel[2] == 0x10


def _identity_paging(guest: Guest, large: bool = False) -> None:
    """Page directory at 0x10000 mapping the first 4 MiB (4 KiB PTEs at 0x11000 or one PSE page)."""
    ram = guest.machine.ram
    if large:
        ram.write(0x10000, (0x83 | 0x4).to_bytes(4, "little"))
        guest.cpu.cr[4] |= 0x10
    else:
        ram.write(0x10000, (0x11000 | 7).to_bytes(4, "little"))
        ram.write(0x11000, b"".join(((p << 12) | 7).to_bytes(4, "little") for p in range(256)))
    guest.cpu.cr[3] = 0x10000


@pytest.mark.parametrize("large", [False, True])
def test_paging_translates_and_sets_accessed_dirty(sys_guest, large):
    _identity_paging(sys_guest, large)
    ram = sys_guest.machine.ram
    if not large:
        # map linear 0x400000 -> page 0x30000 through a second page table
        ram.write(0x10000 + 4, (0x12000 | 7).to_bytes(4, "little"))
        ram.write(0x12000, (0x30000 | 7).to_bytes(4, "little"))
    sys_guest.run(
        "mov eax, cr0\nor eax, 0x80000000\nmov cr0, eax\n"
        + (
            "mov dword ptr [0x400010], 0xcafe\n"
            if not large
            else "mov dword ptr [0x3010], 0xcafe\n"
        )
    )
    assert sys_guest.vector == 0xFFFFFFFF
    if large:
        assert sys_guest.mem(0x3010) == 0xCAFE
        assert sys_guest.mem(0x10000) & 0x60 == 0x60
    else:
        assert sys_guest.mem(0x30010) == 0xCAFE
        assert sys_guest.mem(0x12000) & 0x60 == 0x60  # accessed + dirty


def test_page_fault_sets_cr2_and_error_code(sys_guest):
    _identity_paging(sys_guest)
    ram = sys_guest.machine.ram
    ram.write(0x11000 + 4 * 0x50, ((0x50 << 12) | 5).to_bytes(4, "little"))  # read-only page
    prefix = "mov eax, cr0\nor eax, 0x80010000\nmov cr0, eax\nmov ebx, dword ptr [0x50000]"
    sys_guest.run(prefix + "\nmov dword ptr [0x50004], 1")
    assert sys_guest.vector == 14
    err, eip = _frame(sys_guest, 2)
    assert err == 0b011  # present, write, supervisor
    assert sys_guest.cpu.cr[2] == 0x50004
    assert eip == CODE + len(assemble(prefix))  # the faulting store


def test_not_present_page_fault_and_tlb_invalidation(sys_guest):
    _identity_paging(sys_guest)
    ram = sys_guest.machine.ram
    pte = 0x11000 + 4 * 0x60
    sys_guest.run("mov eax, cr0\nor eax, 0x80000000\nmov cr0, eax\nmov eax, dword ptr [0x60000]")
    assert sys_guest.vector == 0xFFFFFFFF
    ram.write(pte, (0).to_bytes(4, "little"))  # unmap without flushing: the TLB still has it
    sys_guest.run("mov eax, dword ptr [0x60000]")
    assert sys_guest.vector == 0xFFFFFFFF
    sys_guest.run("invlpg [0x60000]\nmov eax, dword ptr [0x60000]")
    assert sys_guest.vector == 14
    assert _frame(sys_guest, 1)[0] == 0b000
    assert sys_guest.cpu.cr[2] == 0x60000


def test_cr3_reload_flushes_tlb(sys_guest):
    _identity_paging(sys_guest)
    ram = sys_guest.machine.ram
    sys_guest.run("mov eax, cr0\nor eax, 0x80000000\nmov cr0, eax\nmov eax, dword ptr [0x60000]")
    ram.write(0x11000 + 4 * 0x60, (0).to_bytes(4, "little"))
    sys_guest.run("mov eax, cr3\nmov cr3, eax\nmov eax, dword ptr [0x60000]")
    assert sys_guest.vector == 14


def test_external_interrupt_wakes_hlt_and_iret_returns(sys_guest):
    cpu = sys_guest.cpu
    ram = sys_guest.machine.ram
    handler = 0x2800
    ram.write(handler, assemble("inc dword ptr [0x4f4]\niretd", handler))
    gate_lo = (0x08 << 16) | handler
    gate_hi = 0x8E00
    ram.write(IDT + 8 * 0x20, gate_lo.to_bytes(4, "little") + gate_hi.to_bytes(4, "little"))
    cpu.irq_ack = lambda: (cpu.set_irq(False), 0x20)[1]
    sys_guest.load("sti\nhlt\nmov eax, 5\nhlt")
    cpu.eip = CODE
    assert cpu.run(1000) == 2 and cpu.halted
    assert cpu.run(1000) == 0 and cpu.halted  # no interrupt: stays halted
    cpu.set_irq(True)
    cpu.run(1000)
    assert sys_guest.mem(0x4F4) == 1
    assert sys_guest.reg("eax") == 5 and cpu.halted


def test_trap_gate_keeps_if_and_interrupt_gate_clears_it(sys_guest):
    ram = sys_guest.machine.ram
    for vector, kind in ((0x30, 0x8F00), (0x31, 0x8E00)):
        handler = 0x2A00 + 0x10 * (vector - 0x30)
        ram.write(handler, assemble("pushfd\npop eax\nhlt", handler))
        gate = ((0x08 << 16) | handler).to_bytes(4, "little") + kind.to_bytes(4, "little")
        ram.write(IDT + 8 * vector, gate)
    sys_guest.run("sti\nint 0x30")
    assert sys_guest.reg("eax") & 0x200
    sys_guest.run("sti\nint 0x31")
    assert not sys_guest.reg("eax") & 0x200


def test_interrupts_wait_for_if(sys_guest):
    cpu = sys_guest.cpu
    taken = []
    cpu.irq_ack = lambda: taken.append(1) or 0x21
    cpu.set_irq(True)
    sys_guest.run("mov eax, 1\nmov eax, 2")
    assert not taken and sys_guest.reg("eax") == 2


def test_budget_is_respected_and_counted(guest):
    guest.load("l: inc eax\njmp l")
    guest.cpu.eip = CODE
    guest.cpu.exact_budget = True
    assert guest.cpu.run(1001) == 1001
    assert guest.cpu.icount == 1001
    assert guest.reg("eax") == 501


def test_slice_ends_at_a_block_boundary_without_exact_budget(guest):
    guest.load("l: inc eax\ninc ebx\ninc ecx\njmp l")
    guest.cpu.eip = CODE
    done = guest.cpu.run(1001)
    assert 996 < done <= 1001 and done % 4 == 0
    assert guest.reg("eax") == done // 4 and guest.cpu.eip == CODE


def test_exit_request_returns_early(guest):
    guest.load("l: jmp l")
    guest.cpu.eip = CODE
    guest.machine.exit_request = True
    assert guest.cpu.run(1000) == 0


def test_single_step_mode_executes_one_instruction_per_block(guest):
    guest.cpu.single_step = True
    guest.cpu.update_mode()
    guest.run("mov eax, 1\nmov ebx, 2\nadd eax, ebx")
    assert all(b.count == 1 for b in guest.cpu.cache.blocks.values())
    assert guest.reg("eax") == 3


def test_trap_flag_raises_debug_exception_after_one_instruction(sys_guest):
    sys_guest.run("pushfd\nor dword ptr [esp], 0x100\npopfd\nmov eax, 1\nmov eax, 2")
    assert sys_guest.vector == 1
    assert sys_guest.reg("eax") == 1


def test_self_modifying_code_is_retranslated(guest):
    # the store rewrites the immediate of the next instruction, in the same block
    guest.run("mov byte ptr [target + 1], 0x42\ntarget: mov al, 0x11\nmov ebx, 1")
    assert guest.reg("eax") & 0xFF == 0x42
    guest.load("mov eax, 7")
    guest.cpu.eip = CODE
    guest.cpu.halted = False
    guest.load("mov eax, 9\nhlt")  # DMA-style write over translated code
    guest.cpu.run(100)
    assert guest.reg("eax") == 9


def test_code_page_flag_cleared_when_blocks_dropped(guest):
    guest.run("mov eax, 1")
    assert guest.machine.ram.code[CODE >> 12]
    guest.machine.ram.write(CODE, b"\x90" * 16)
    assert not guest.machine.ram.code[CODE >> 12]


def test_state_round_trip_is_identical_and_resumes(guest):
    guest.load("mov eax, 1\nadd eax, 0x7fffffff\nl: inc ecx\njmp l")
    cpu = guest.cpu
    cpu.eip = CODE
    cpu.run(10)
    state = cpu.get_state()
    other = Guest()
    other.machine.ram.write(0, guest.machine.ram.read(0, 1 << 20))
    other.cpu.set_state(state)
    assert other.cpu.get_state() == state
    cpu.run(100)
    other.cpu.run(100)
    assert other.cpu.get_state() == cpu.get_state()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("regs", [1, 2]),
        ("regs", ["a"] * 8),
        ("segs", [[0, 0, 0]] * 6),
        ("eip", 1 << 32),
        ("cr", None),
        ("msr", {"bogus": 1}),
        ("cpl", -1),
    ],
)
def test_set_state_rejects_malformed_data_and_changes_nothing(guest, key, value):
    guest.cpu.r[0] = 1234
    state = guest.cpu.get_state()
    with pytest.raises(MachineError, match=key):
        guest.cpu.set_state({**state, key: value})
    assert guest.cpu.get_state() == state
    with pytest.raises(MachineError):
        guest.cpu.set_state({})


def test_real_mode_is_refused_with_one_line(guest):
    guest.cpu.reset()
    with pytest.raises(MachineError, match="protected mode"):
        guest.cpu.run(10)


def test_unknown_opcode_never_raises_python_errors(sys_guest):
    sys_guest.load(".byte 0x0f, 0x0b")
    for opcode in range(256):
        sys_guest.machine.ram.write(CODE, bytes([0x0F, opcode, 0xC0, 0, 0, 0, 0, 0xF4, 0xF4]))
        sys_guest.clear_vector()
        sys_guest.cpu.enter_flat_protected_mode(CODE, 0, 0)
        sys_guest.cpu.r[4] = STACK
        sys_guest.cpu.idt = [IDT, 32 * 8 - 1]
        sys_guest.cpu.run(50)


def test_in_asm_and_cpu_tracing_through_logging(guest, caplog):
    with caplog.at_level(logging.DEBUG, logger="arctern.cpu"):
        guest.run("mov eax, 0x1234\nadd eax, ebx")
    text = caplog.text
    assert "mov eax, 0x1234" in text
    assert "EAX=" in text and "EIP=00001000" in text


def test_random_code_only_ever_raises_guest_exceptions():
    """Seeded fuzz: random bytes run as code give #UD/#GP/#PF... in the guest, never a Python
    error. RAM around the snippet is HLT so that stray jumps stop quickly."""
    guest = Guest()
    guest.machine.ram.write(0, b"\xf4" * (1 << 20))
    guest.install_idt()
    rng = random.Random(1234)
    for _ in range(40):
        guest.machine.ram.write(CODE, rng.randbytes(24))
        guest.cpu.enter_flat_protected_mode(CODE, rng.getrandbits(32), 0x40000)
        for n in (1, 2, 5, 6, 7):
            guest.cpu.r[n] = rng.choice((0x40000, 5, rng.getrandbits(32)))
        guest.cpu.r[4] = STACK
        guest.set_gdt()
        guest.cpu.idt = [IDT, 64 * 8 - 1]
        guest.cpu.run(300)


def test_far_call_retf_and_far_jump_through_the_gdt(sys_guest):
    # 0x20: a second flat code segment
    sys_guest.set_gdt([0x00CF9A000000FFFF])
    far_fn, done = CODE + 0x80, CODE + 0x90
    sys_guest.load("mov eax, cs\nretf", far_fn)
    sys_guest.load("mov ecx, cs\nhlt", done)
    jmp_far = ", ".join(f"{b:#x}" for b in b"\xea" + done.to_bytes(4, "little") + b"\x08\x00")
    sys_guest.run(f"lcall 0x20:{far_fn}\nmov ebx, cs\n.byte {jmp_far}")
    assert sys_guest.vector == 0xFFFFFFFF
    assert sys_guest.reg("eax") & 0xFFFF == 0x20
    assert sys_guest.reg("ebx") & 0xFFFF == 0x08 and sys_guest.reg("ecx") & 0xFFFF == 0x08
    assert sys_guest.reg("esp") == STACK


def test_far_jump_to_a_data_segment_is_gp(sys_guest):
    sys_guest.run(".byte 0xea, 0, 0x20, 0, 0, 0x10, 0")  # jmp 0x10:0x2000
    assert sys_guest.vector == 13 and _frame(sys_guest, 1)[0] == 0x10


def test_descriptor_table_registers_and_control_registers(sys_guest):
    ram = sys_guest.machine.ram
    ram.write(0x3000, (0x27).to_bytes(2, "little") + (0x700).to_bytes(4, "little"))
    sys_guest.run(  # lgdt [0x3000]; sgdt [0x3010]; sidt [0x3020] (keystone adds 0x66 to these)
        ".byte 0x0f, 0x01, 0x15, 0, 0x30, 0, 0\n.byte 0x0f, 0x01, 0x05, 0x10, 0x30, 0, 0\n"
        ".byte 0x0f, 0x01, 0x0d, 0x20, 0x30, 0, 0\nmov eax, cr0\nmov cr2, eax\n"
        "mov ebx, cr2\nmov ecx, 0x55\nmov dr0, ecx\nmov edx, dr0\nsmsw si"
    )
    assert ram.read(0x3010, 6) == ram.read(0x3000, 6)
    assert int.from_bytes(ram.read(0x3022, 4), "little") == IDT
    assert sys_guest.reg("ebx") == sys_guest.cpu.cr[0] and sys_guest.reg("edx") == 0x55
    assert sys_guest.reg("esi") & 0xFFFF == sys_guest.cpu.cr[0] & 0xFFFF


def test_ltr_lldt_and_selector_queries(sys_guest):
    # 0x20: TSS, 0x28: LDT at 0x900 holding one data segment (selector 0x04 | TI)
    sys_guest.set_gdt([0x0000890000000067 | (0x800 << 16), 0x0000820000000007 | (0x900 << 16)])
    sys_guest.machine.ram.write(0x900, (0x00CF92000000FFFF).to_bytes(8, "little"))
    sys_guest.run(
        "mov ax, 0x20\nltr ax\nmov ax, 0x28\nlldt ax\nmov ax, 0x04\nmov fs, ax\n"
        "str bx\nsldt cx\nlsl edx, eax\nmov esi, 0x08\nlar edi, esi"
    )
    assert sys_guest.vector == 0xFFFFFFFF
    assert (sys_guest.reg("ebx") & 0xFFFF, sys_guest.reg("ecx") & 0xFFFF) == (0x20, 0x28)
    assert sys_guest.reg("edx") == 0xFFFFFFFF
    assert sys_guest.reg("edi") == 0x00C09A00  # access rights: limit bits masked out
    assert sys_guest.cpu.sel[4] == 0x04


def test_unknown_msr_is_gp_and_tsc_counts_up(sys_guest):
    sys_guest.run(
        "rdtsc\nmov esi, eax\nmov edi, edx\nmov ecx, 0x174\nmov eax, 8\nxor edx, edx\n"
        "wrmsr\nxor eax, eax\nrdmsr\nmov ebx, eax\nrdtsc"
    )
    assert sys_guest.reg("ebx") == 8
    assert (sys_guest.reg("edx"), sys_guest.reg("eax")) >= (
        sys_guest.reg("edi"),
        sys_guest.reg("esi"),
    )
    sys_guest.run("mov ecx, 0x12345\nrdmsr")
    assert sys_guest.vector == 13


def test_ring3_io_and_cli_need_iopl(sys_guest):
    # IOPL 3: OUT is allowed, then HLT (privileged) faults
    _to_ring3(sys_guest, "out 0x80, al\nhlt", 0x3002)
    assert sys_guest.vector == 13 and _frame(sys_guest, 2)[1] == USER_CODE + 2
    sys_guest.clear_vector()
    # IOPL 0: OUT itself faults
    _to_ring3(sys_guest, "out 0x80, al\nhlt", 0x0002)
    assert sys_guest.vector == 13 and _frame(sys_guest, 2)[1] == USER_CODE


def test_virt_to_phys_for_the_monitor_neither_faults_nor_sets_accessed(sys_guest):
    cpu = sys_guest.cpu
    assert cpu.virt_to_phys(0x1234) == 0x1234
    _identity_paging(sys_guest)
    ram = sys_guest.machine.ram
    ram.write(0x11000 + 4 * 0x60, ((0x70 << 12) | 1).to_bytes(4, "little"))
    cpu.h_write_cr(0, cpu.cr[0] | 0x80000000)
    assert cpu.virt_to_phys(0x60123) == 0x70123
    assert sys_guest.mem(0x11000 + 4 * 0x60) & 0x20 == 0
    with pytest.raises(MachineError, match="not mapped"):
        cpu.virt_to_phys(0x800000)
