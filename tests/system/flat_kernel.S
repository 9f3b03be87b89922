/*
 * A Multiboot kernel as a flat binary: the header's address fields say where it loads
 * (no ELF). It prints the magic, whether its bss came zeroed and its command line on
 * COM1, then exits through isa-debug-exit.
 */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00010003       /* page align, memory info, address fields */

    .text
    .globl image_start
image_start:
    jmp entry
    .align 4
header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
    .long header, image_start, data_end, bss_end, entry

putc:                               /* %al: character */
    push %eax
    mov $0x3FD, %dx
1:  inb %dx, %al
    test $0x20, %al
    jz 1b
    pop %eax
    mov $0x3F8, %dx
    outb %al, %dx
    ret

puts:                               /* %esi: NUL-terminated string */
    lodsb
    test %al, %al
    jz 2f
    call putc
    jmp puts
2:  ret

entry:
    mov $stack_top, %esp
    mov %ebx, %edi                  /* multiboot info */
    cmp $0x2BADB002, %eax
    jne fail
    mov $msg_magic, %esi
    call puts
    mov $bss_start, %ecx            /* bss must be zero */
3:  cmpl $0, (%ecx)
    jne fail
    add $4, %ecx
    cmp $bss_start + 0x1000, %ecx    /* the stack lives above */
    jb 3b
    mov $msg_bss, %esi
    call puts
    mov 16(%edi), %esi              /* info->cmdline */
    call puts
    mov $'\n', %al
    call putc
    mov $0, %al
    outb %al, $0xF4
fail:
    mov $msg_fail, %esi
    call puts
    mov $1, %al
    outb %al, $0xF4
    hlt

msg_magic: .asciz "flat kernel: magic ok\n"
msg_bss:   .asciz "bss zeroed\ncmdline: "
msg_fail:  .asciz "flat kernel: FAIL\n"
    .align 4
data_end:

    .section .bss
bss_start:
    .space 0x3000
stack_top:
bss_end:
