/*
 * The freestanding runtime of Arctern's test guests (see README.md).
 *
 * A guest defines  int main(uint32_t magic, const struct multiboot_info *mbi);
 * it prints on COM1 with putc/puts/printf and leaves with exit(code) or by
 * returning from main: isa-debug-exit then ends the emulator with status
 * (code << 1) | 1, so a guest returning 0 gives exit status 1.
 */
#ifndef ARCTERN_GUEST_H
#define ARCTERN_GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define COM1 0x3F8
#define DEBUG_EXIT_PORT 0xF4
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr;
    uint32_t config_table;
    uint32_t boot_loader_name;
} __attribute__((packed));

struct multiboot_mmap_entry {
    uint32_t size;
    uint64_t addr, len;
    uint32_t type;
} __attribute__((packed));

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint32_t mmio_read32(uintptr_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uintptr_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }

static inline void cli(void) { __asm__ volatile("cli"); }
static inline void sti(void) { __asm__ volatile("sti"); }
static inline void hlt(void) { __asm__ volatile("hlt"); }
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt"); }  /* no interrupt lost between */

/*
 * Interrupts. A handler is a C function with __attribute__((interrupt)):
 *     __attribute__((interrupt)) static void tick(struct interrupt_frame *frame) { ... }
 * idt_set_gate() installs it (32-bit interrupt gate, ring 0) and loads the IDT.
 * pic_init() programs the 8259 pair (ICW1-4) with vector bases and a mask of the
 * IRQs to enable; pic_eoi(irq) acknowledges one (both chips for IRQ 8-15).
 */
struct interrupt_frame;
typedef void (*isr_t)(struct interrupt_frame *);
void idt_set_gate(uint8_t vector, isr_t handler);
void pic_init(uint8_t master_base, uint8_t slave_base, uint16_t enabled_irqs);
void pic_eoi(int irq);

/*
 * The local APIC (0xfee00000) and microvm's I/O APICs (GSI 0-23 at 0xfec00000, 24-47 at
 * 0xfec10000). lapic_enable() sets the software enable (spurious vector 0xff);
 * ioapic_route() sends a GSI to APIC 0 as a fixed interrupt, unmasked; a handler ends
 * with lapic_eoi() (which also ends a level-triggered pin's remote IRR).
 */
#define LAPIC_BASE 0xFEE00000u
#define IOAPIC_BASE 0xFEC00000u
#define IOAPIC2_BASE 0xFEC10000u
void lapic_enable(void);
void lapic_eoi(void);
void ioapic_route(unsigned gsi, uint8_t vector, int level_triggered);

void putc(char c);
void puts(const char *s);                       /* no newline added */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void __attribute__((noreturn)) exit(int code);   /* isa-debug-exit; hlt forever if absent */

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* Helpers of the guests' own (inline: no code in a guest that does not use them). */

/* The -append part of the command line: what follows the kernel's path ("" if none). */
static inline const char *multiboot_append(const struct multiboot_info *mbi)
{
    const char *cmdline = (mbi->flags & 4) ? (const char *)mbi->cmdline : "";
    while (*cmdline && *cmdline != ' ') cmdline++;
    return *cmdline ? cmdline + 1 : cmdline;
}

/* Whether `part` occurs in `s`. */
static inline int str_contains(const char *s, const char *part)
{
    size_t n = strlen(part);
    for (; *s; s++)
        if (!memcmp(s, part, n)) return 1;
    return 0;
}

/* Whether the n bytes at p are all zero. */
static inline int all_zero(const void *p, size_t n)
{
    const uint8_t *bytes = p;
    for (size_t i = 0; i < n; i++)
        if (bytes[i]) return 0;
    return 1;
}

#endif
