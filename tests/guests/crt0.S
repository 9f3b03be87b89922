/*
 * Entry of every test guest: the Multiboot v1 header, a GDT, a stack, then
 * main(magic, info); main's return value becomes the exit code.
 *
 * The loader (QEMU -M microvm, arctern-system) enters in flat 32-bit protected
 * mode with EAX = 0x2BADB002 and EBX = the Multiboot information block. Flags 3
 * (page-aligned modules, memory information) need no address fields: the ELF
 * program headers say where everything goes.
 */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x3

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .text
    .globl _start
_start:
    /* Our own GDT, with the selectors QEMU's loader uses (code 0x08, data 0x10): the
     * loader's table lives in memory the guest does not own. EAX/EBX survive. */
    lgdt guest_gdt_desc
    ljmp $0x08, $1f
1:  mov $0x10, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    mov %ecx, %fs
    mov %ecx, %gs
    mov %ecx, %ss
    mov $guest_stack_top, %esp
    xor %ebp, %ebp
    push %ebx                   /* struct multiboot_info * */
    push %eax                   /* loader magic */
    call main
    push %eax
    call exit                   /* does not return */

    .section .rodata
    .align 8
guest_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF        /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: flat 32-bit data */
guest_gdt_desc:
    .word guest_gdt_desc - guest_gdt - 1
    .long guest_gdt

    .section .bss
    .align 16
    .globl guest_stack_bottom
guest_stack_bottom:
    .space 65536
guest_stack_top:

    .section .note.GNU-stack, "", @progbits
