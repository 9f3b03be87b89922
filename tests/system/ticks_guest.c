/*
 * Timer interrupts end to end: the PIT (channel 0, mode 2) interrupts through the
 * 8259 pair; the guest sleeps in HLT between ticks and counts them in a handler.
 * Command line: "hz=N count=M" (defaults 1000 and 50). Prints only counts, never
 * times, so two emulators print the same.
 */
#include "guest.h"

#define PIT_HZ 1193182u
#define TIMER_VECTOR 0x20

static volatile uint32_t ticks;
static volatile uint32_t in_handler_if;   /* IF seen inside the handler: must be 0 */

__attribute__((interrupt)) static void timer_tick(struct interrupt_frame *frame)
{
    uint32_t flags;
    (void)frame;
    __asm__ volatile("pushf; pop %0" : "=r"(flags));
    in_handler_if |= flags & 0x200;
    ticks++;
    pic_eoi(0);
}

static uint32_t option(const char *cmdline, const char *key, uint32_t fallback)
{
    size_t n = strlen(key);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && !memcmp(p, key, n) && p[n] == '=') {
            uint32_t v = 0;
            for (p += n + 1; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint32_t)(*p - '0');
            return v;
        }
    }
    return fallback;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    const char *cmdline = (const char *)mbi->cmdline;
    uint32_t hz = option(cmdline, "hz", 1000), count = option(cmdline, "count", 50);
    uint32_t divisor = PIT_HZ / hz, wakeups = 0;

    idt_set_gate(TIMER_VECTOR, timer_tick);
    pic_init(TIMER_VECTOR, TIMER_VECTOR + 8, 1 << 0);
    outb(0x43, 0x34);                       /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, divisor & 0xFF);
    outb(0x40, divisor >> 8);
    printf("ticking at %u Hz, divisor %u\n", hz, divisor);
    while (ticks < count) {
        sti_hlt();                          /* woken by the next tick */
        wakeups++;
    }
    cli();
    /* A tick may arrive right after the handler's iret, before the loop counts a wake-up:
     * how many wake-ups there were depends on timing, only that there were some does not. */
    printf("ticks %s%u, woken %s, IF in handler %u\n", ticks >= count ? ">=" : "<", count,
           wakeups ? "yes" : "no", in_handler_if >> 9);
    return 0;
}
