/* Multiboot v1 entry of the virtio-blk test guest: own GDT, stack, then main(mbi). */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x3
    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .text
    .globl _start
_start:
    cli
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $stack_top, %esp
    push %ebx                   /* multiboot info */
    call main
2:  hlt
    jmp 2b

    /* Interrupt entry for vectors 0x20-0x2f: save registers, call irq_entry(). */
    .weak irq_entry             /* a guest without interrupts need not define it */
    .globl irq_stub
irq_stub:
    pusha
    cld
    call irq_entry
    popa
    iret

    .section .rodata
    .align 8
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: flat 32-bit data */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt

    .section .bss
    .align 16
    .space 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
