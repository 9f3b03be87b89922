/* The runtime behind guest.h: COM1 output, a printf formatter, exit, string helpers. */
#include "guest.h"

#define LSR 5
#define LSR_THR_EMPTY 0x20

void putc(char c)
{
    while (!(inb(COM1 + LSR) & LSR_THR_EMPTY)) {}
    outb(COM1, (uint8_t)c);
}

void puts(const char *s)
{
    while (*s) putc(*s++);
}

void exit(int code)
{
    outb(DEBUG_EXIT_PORT, (uint8_t)code);
    for (;;) __asm__ volatile("cli; hlt");
}

/* --- interrupts ---------------------------------------------------------------------- */

static uint64_t idt[256];

void idt_set_gate(uint8_t vector, isr_t handler)
{
    static const struct { uint16_t limit; uint32_t base; } __attribute__((packed)) idtr = {
        sizeof(idt) - 1, (uint32_t)idt
    };
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    uint32_t addr = (uint32_t)handler;
    idt[vector] = (uint64_t)((addr & 0xFFFF) | ((uint32_t)cs << 16))
                | ((uint64_t)((addr & 0xFFFF0000) | 0x8E00) << 32);
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void pic_init(uint8_t master_base, uint8_t slave_base, uint16_t enabled_irqs)
{
    /* QEMU's microvm firmware leaves the local APIC's LINT0 masked: route the PIC's INTR
     * through it as ExtINT (a machine without a local APIC ignores these two stores). */
    lapic_enable();
    mmio_write32(LAPIC_BASE + 0x350, 0x700);   /* LVT LINT0: ExtINT, unmasked */
    outb(0x20, 0x11);               /* ICW1: edge, cascade, ICW4 follows */
    outb(0xA0, 0x11);
    outb(0x21, master_base);        /* ICW2: vector base */
    outb(0xA1, slave_base);
    outb(0x21, 0x04);               /* ICW3: slave on IRQ 2 */
    outb(0xA1, 0x02);
    outb(0x21, 0x01);               /* ICW4: 8086 mode */
    outb(0xA1, 0x01);
    if (enabled_irqs & 0xFF00) enabled_irqs |= 1 << 2;   /* the cascade */
    outb(0x21, (uint8_t)~enabled_irqs);
    outb(0xA1, (uint8_t)(~enabled_irqs >> 8));
}

void pic_eoi(int irq)
{
    if (irq >= 8) outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

void lapic_enable(void)
{
    mmio_write32(LAPIC_BASE + 0xF0, 0x1FF);   /* spurious vector register: APIC on, vector 0xff */
}

void lapic_eoi(void)
{
    mmio_write32(LAPIC_BASE + 0xB0, 0);
}

void ioapic_route(unsigned gsi, uint8_t vector, int level_triggered)
{
    uint32_t base = gsi < 24 ? IOAPIC_BASE : IOAPIC2_BASE;
    unsigned pin = gsi % 24;
    mmio_write32(base, 0x11 + 2 * pin);       /* high half: destination APIC ID 0 */
    mmio_write32(base + 0x10, 0);
    mmio_write32(base, 0x10 + 2 * pin);       /* low half: vector, fixed, physical, unmasked */
    mmio_write32(base + 0x10, vector | (level_triggered ? 1u << 15 : 0));
}

/* --- formatting --------------------------------------------------------------------- */

struct sink {
    char *buf;      /* NULL: straight to COM1 */
    size_t size, len;
};

static void emit(struct sink *out, char c)
{
    if (!out->buf) putc(c);
    else if (out->len + 1 < out->size) out->buf[out->len] = c;
    out->len++;
}

static void emit_padded(struct sink *out, const char *text, size_t n, int width, int left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left && pad == '0' && n && (*text == '-')) {   /* the sign goes before zeroes */
        emit(out, *text++);
        n--;
    }
    if (!left) while (fill--) emit(out, pad);
    while (n--) emit(out, *text++);
    if (left) while (fill-- > 0) emit(out, ' ');
}

static size_t format_number(char *tmp, uint64_t value, unsigned base, int upper, int negative)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char rev[24];
    size_t n = 0, len = 0;
    do {
        rev[n++] = digits[value % base];
        value /= base;
    } while (value);
    if (negative) tmp[len++] = '-';
    while (n) tmp[len++] = rev[--n];
    return len;
}

static int format(struct sink *out, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            emit(out, *fmt);
            continue;
        }
        int left = 0, width = 0, longs = 0, alt = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (fmt[1] == '-') left = 1;
            else if (fmt[1] == '0') pad = '0';
            else if (fmt[1] == '#') alt = 1;
            else break;
        }
        while (fmt[1] >= '0' && fmt[1] <= '9') width = width * 10 + (*++fmt - '0');
        while (fmt[1] == 'l' || fmt[1] == 'z' || fmt[1] == 'h') longs += *++fmt == 'l';
        char tmp[24], conv = *++fmt;
        uint64_t value;
        size_t n;
        switch (conv) {
        case 'd': case 'i': {
            int64_t v = longs > 1 ? va_arg(ap, int64_t) : va_arg(ap, int32_t);
            n = format_number(tmp, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, 0, v < 0);
            emit_padded(out, tmp, n, width, left, pad);
            break;
        }
        case 'u': case 'x': case 'X': case 'o':
            value = longs > 1 ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t);
            if (alt && value && conv != 'u') {     /* '#': 0x / 0X / 0 prefix, as C's printf */
                emit(out, '0');
                if (conv != 'o') emit(out, conv);
                width = width > 2 ? width - (conv == 'o' ? 1 : 2) : 0;
            }
            n = format_number(tmp, value, conv == 'u' ? 10 : conv == 'o' ? 8 : 16, conv == 'X', 0);
            emit_padded(out, tmp, n, width, left, pad);
            break;
        case 'p':
            emit(out, '0');
            emit(out, 'x');
            n = format_number(tmp, (uintptr_t)va_arg(ap, void *), 16, 0, 0);
            emit_padded(out, tmp, n, width > 2 ? width - 2 : 0, left, '0');
            break;
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            emit_padded(out, tmp, 1, width, left, ' ');
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            emit_padded(out, s, strlen(s), width, left, ' ');
            break;
        }
        case '%':
            emit(out, '%');
            break;
        case '\0':
            return (int)out->len;
        default:            /* unknown conversion: print it as written */
            emit(out, '%');
            emit(out, conv);
        }
    }
    return (int)out->len;
}

int vprintf(const char *fmt, va_list ap)
{
    struct sink out = {0, 0, 0};
    return format(&out, fmt, ap);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    struct sink out = {buf, size, 0};
    va_list ap;
    va_start(ap, fmt);
    int n = format(&out, fmt, ap);
    va_end(ap);
    if (size) buf[out.len < size ? out.len : size - 1] = '\0';
    return n;
}

/* --- what the compiler may call even in freestanding code ----------------------------- */

void *memset(void *dst, int c, size_t n)
{
    void *ret = dst;
    __asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(c) : "memory");
    return ret;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    void *ret = dst;
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
    return ret;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}
