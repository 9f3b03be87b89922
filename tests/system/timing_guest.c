/*
 * Output that depends on timing: how many loop iterations the CPU manages while the
 * PIT ticks ten times at 1 kHz. Under real time it varies from run to run; with
 * -icount (guest time counts instructions) it must be the same every time.
 */
#include "guest.h"

static volatile uint32_t ticks;

__attribute__((interrupt)) static void tick(struct interrupt_frame *frame)
{
    (void)frame;
    ticks++;
    pic_eoi(0);
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    uint32_t divisor = 1193182u / 1000, spins = 0, at_first_tick = 0;
    idt_set_gate(0x20, tick);
    pic_init(0x20, 0x28, 1 << 0);
    outb(0x43, 0x34);
    outb(0x40, divisor & 0xFF);
    outb(0x40, divisor >> 8);
    sti();
    while (ticks < 1) spins++;
    at_first_tick = spins;
    while (ticks < 11) spins++;
    cli();
    printf("spins in 10 ticks: %u\n", spins - at_first_tick);
    return 0;
}
