/*
 * Register-level checks of the default microvm's interrupt controllers and clock,
 * printed on COM1 so two emulators can be compared line by line: the local APIC
 * (reset values, priorities, self-IPIs, the timer in one-shot and periodic mode),
 * both I/O APICs (ID, version, redirection entries, remote IRR of a level-triggered
 * pin and its EOI broadcast) and the MC146818 RTC (registers A-D, CMOS bytes, BCD and
 * binary, 12 and 24 hour formats, the seconds rollover, periodic, update-ended and
 * alarm interrupts through the I/O APIC). Only timing-independent facts are printed.
 */
#include "guest.h"

#define IOAPIC1 IOAPIC_BASE
#define IOAPIC2 IOAPIC2_BASE
enum {
    ID = 0x20, VER = 0x30, TPR = 0x80, PPR = 0xA0, LDR = 0xD0, DFR = 0xE0,
    SVR = 0xF0, ISR = 0x100, TMR = 0x180, IRR = 0x200, ESR = 0x280, ICR_LO = 0x300,
    ICR_HI = 0x310, LVT_TIMER = 0x320, LVT_LINT0 = 0x350, LVT_LINT1 = 0x360,
    LVT_ERROR = 0x370, INIT_COUNT = 0x380, CUR_COUNT = 0x390, DIVIDE = 0x3E0,
};
enum { V_TIMER = 0x40, V_IPI = 0x41, V_LOW = 0x31, V_RTC = 0x48 };
enum { RTC_SEC, RTC_SEC_ALARM, RTC_MIN, RTC_MIN_ALARM, RTC_HOUR, RTC_HOUR_ALARM, RTC_WDAY,
       RTC_MDAY, RTC_MONTH, RTC_YEAR, RTC_A, RTC_B, RTC_C, RTC_D, RTC_CENTURY = 0x32 };

static inline uint32_t lapic(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_set(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

static uint32_t ioapic(uint32_t base, uint32_t reg)
{
    mmio_write32(base, reg);
    return mmio_read32(base + 0x10);
}

static void ioapic_set(uint32_t base, uint32_t reg, uint32_t v)
{
    mmio_write32(base, reg);
    mmio_write32(base + 0x10, v);
}

static uint8_t cmos(uint8_t index)
{
    outb(0x70, index);
    return inb(0x71);
}

static void cmos_set(uint8_t index, uint8_t v)
{
    outb(0x70, index);
    outb(0x71, v);
}

static volatile int timer_ticks, ipis, low_ipis, rtc_irqs;
static volatile uint32_t rtc_flags, rtc_remote_irr;

__attribute__((interrupt)) static void on_timer(struct interrupt_frame *f)
{
    (void)f;
    timer_ticks++;
    lapic_eoi();
}

__attribute__((interrupt)) static void on_ipi(struct interrupt_frame *f)
{
    (void)f;
    ipis++;
    lapic_eoi();
}

__attribute__((interrupt)) static void on_low_ipi(struct interrupt_frame *f)
{
    (void)f;
    low_ipis++;
    lapic_eoi();
}

__attribute__((interrupt)) static void on_rtc(struct interrupt_frame *f)
{
    (void)f;
    rtc_irqs++;
    rtc_remote_irr |= ioapic(IOAPIC1, 0x10 + 2 * 8) & (1u << 14);
    rtc_flags |= cmos(RTC_C); /* lowers the line */
    lapic_eoi();              /* level-triggered: broadcast to the I/O APIC */
}

/* Lets a just-raised interrupt be taken: emulators recognise interrupts between their
 * translated blocks, and each loop iteration ends one. */
static void settle(void)
{
    for (volatile int i = 0; i < 100; i++) {}
}

static void hex(const char *what, uint32_t v) { printf("%s %08x\n", what, (unsigned)v); }
static void flag(const char *what, int ok) { printf("%s %s\n", what, ok ? "yes" : "no"); }

static void lapic_reset_state(void)
{
    uint32_t lo, hi, eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    flag("cpuid announces the apic", edx >> 9 & 1);
    printf("cpuid initial apic id %u\n", (unsigned)(ebx >> 24));
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0x1B));
    hex("apic base msr", lo);
    static const struct { const char *name; uint32_t reg; } regs[] = {
        {"id", ID}, {"version", VER}, {"tpr", TPR}, {"ppr", PPR}, {"ldr", LDR}, {"dfr", DFR},
        {"svr", SVR}, {"lvt timer", LVT_TIMER}, {"lvt lint0", LVT_LINT0},
        {"lvt lint1", LVT_LINT1}, {"lvt error", LVT_ERROR}, {"initial count", INIT_COUNT},
        {"current count", CUR_COUNT}, {"divide", DIVIDE}, {"irr", IRR}, {"isr", ISR},
    };
    for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        printf("lapic %s ", regs[i].name);
        hex("", lapic(regs[i].reg));
    }
}

static void ioapic_state(const char *name, uint32_t base)
{
    printf("%s id %08x version %08x arb %08x\n", name, (unsigned)ioapic(base, 0),
           (unsigned)ioapic(base, 1), (unsigned)ioapic(base, 2));
    printf("%s pin 0 %08x %08x pin 23 %08x %08x\n", name, (unsigned)ioapic(base, 0x10),
           (unsigned)ioapic(base, 0x11), (unsigned)ioapic(base, 0x3E), (unsigned)ioapic(base, 0x3F));
    ioapic_set(base, 0, 0x0F000000);
    ioapic_set(base, 1, 0);
    ioapic_set(base, 0x12, 0x0001F7FF); /* every writable low bit, masked */
    ioapic_set(base, 0x13, 0xFFFFFFFF);
    printf("%s id written %08x pin 1 %08x %08x\n", name, (unsigned)ioapic(base, 0),
           (unsigned)ioapic(base, 0x12), (unsigned)ioapic(base, 0x13));
    ioapic_set(base, 0, 0);
    ioapic_set(base, 0x12, 0x10000);
    ioapic_set(base, 0x13, 0);
    printf("%s reg 3 %08x reg 0x40 %08x reg 0xff %08x\n", name, (unsigned)ioapic(base, 3),
           (unsigned)ioapic(base, 0x40), (unsigned)ioapic(base, 0xFF));
    mmio_write32(base, 0x1FF);
    printf("%s ioregsel 0x1ff reads %08x, eoi register %08x\n", name,
           (unsigned)mmio_read32(base), (unsigned)mmio_read32(base + 0x40));
}

/* What the registers keep of what is written, and what writing the read-only ones does. */
static void lapic_writes(void)
{
    /* LINT1 is written while the APIC is software-disabled: does the mask stick? */
    static const struct { const char *name; uint32_t reg, value, restore; } probes[] = {
        {"lint1 written while disabled", LVT_LINT1, 0x700, 0x10000},
        {"lvt error all ones", LVT_ERROR, 0xFFFFFFFF, 0x10000},
        {"tpr 0x1ff", TPR, 0x1FF, 0},
        {"divide 0xff", DIVIDE, 0xFF, 0},
        {"dfr 0", DFR, 0, 0xFFFFFFFF},
        {"ldr all ones", LDR, 0xFFFFFFFF, 0},
        {"icr high all ones", ICR_HI, 0xFFFFFFFF, 0},
        {"svr all ones", SVR, 0xFFFFFFFF, 0xFF},
    };
    for (unsigned i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        lapic_set(probes[i].reg, probes[i].value);
        hex(probes[i].name, lapic(probes[i].reg));
        lapic_set(probes[i].reg, probes[i].restore);
    }
    lapic_set(ESR, 0);
    lapic_set(VER, 0);
    lapic_set(PPR, 0);
    hex("version after write", lapic(VER));
    lapic_set(ESR, 0);
    hex("esr after writes to read-only registers", lapic(ESR));
    lapic(0x400 - 0x10);
    lapic_set(ESR, 0);
    hex("esr after a reserved read", lapic(ESR));
    printf("byte reads: version %02x svr %02x\n", *(volatile uint8_t *)(LAPIC_BASE + VER),
           *(volatile uint8_t *)(LAPIC_BASE + SVR));
    *(volatile uint8_t *)(LAPIC_BASE + TPR) = 0x40;
    hex("tpr after a byte write", lapic(TPR));
    lapic_set(TPR, 0);
}

static void priorities_and_ipis(void)
{
    lapic_enable();
    hex("svr enabled", lapic(SVR));
    sti();
    lapic_set(ICR_LO, (1u << 18) | V_IPI); /* self */
    settle();
    printf("self ipi received %d\n", ipis);
    lapic_set(TPR, 0x50);
    hex("ppr with tpr 0x50", lapic(PPR));
    lapic_set(ICR_LO, (1u << 18) | V_LOW); /* class 3: held back by the TPR */
    settle();
    printf("low ipi while tpr 0x50: received %d irr %08x\n", low_ipis, (unsigned)lapic(IRR + 0x10));
    lapic_set(TPR, 0);
    settle();
    printf("low ipi after tpr 0: received %d irr %08x\n", low_ipis, (unsigned)lapic(IRR + 0x10));
    lapic_set(ICR_HI, 0);
    lapic_set(ICR_LO, V_IPI); /* physical destination 0: this CPU */
    settle();
    printf("ipi to apic 0 received %d\n", ipis);
    lapic_set(ICR_HI, 0x01000000);
    lapic_set(ICR_LO, V_IPI); /* physical destination 1: nobody */
    settle();
    printf("ipi to apic 1 received %d\n", ipis);
    lapic_set(ICR_LO, (3u << 18) | V_IPI); /* all excluding self */
    settle();
    printf("ipi to all others received %d\n", ipis);
    hex("icr low", lapic(ICR_LO));
    lapic_set(ESR, 0);
    hex("esr", lapic(ESR));
    cli();
}

static void lapic_timer(void)
{
    lapic_set(DIVIDE, 0x3); /* divide by 16 */
    hex("divide readback", lapic(DIVIDE));
    lapic_set(LVT_TIMER, V_TIMER); /* one-shot */
    lapic_set(INIT_COUNT, 200000);
    uint32_t first = lapic(CUR_COUNT);
    flag("one-shot counting down", first <= 200000 && first > 0);
    sti();
    while (!timer_ticks) hlt();
    cli();
    printf("one-shot ticks %d current %08x\n", timer_ticks, (unsigned)lapic(CUR_COUNT));
    for (volatile int i = 0; i < 200000; i++) {}
    printf("one-shot ticks later %d\n", timer_ticks);

    timer_ticks = 0;
    lapic_set(DIVIDE, 0xB); /* divide by 1 */
    lapic_set(LVT_TIMER, (1u << 17) | V_TIMER); /* periodic */
    lapic_set(INIT_COUNT, 1000000);
    sti();
    while (timer_ticks < 5) hlt();
    cli();
    lapic_set(LVT_TIMER, (1u << 16) | (1u << 17) | V_TIMER);
    printf("periodic ticks %d, reloads %s\n", timer_ticks,
           lapic(CUR_COUNT) <= 1000000 && lapic(CUR_COUNT) > 0 ? "yes" : "no");
    lapic_set(INIT_COUNT, 0);
    hex("stopped current count", lapic(CUR_COUNT));
}

static int wait_flag(uint8_t mask)
{
    for (uint32_t i = 0; i < 200000000u; i++)
        if (cmos(RTC_C) & mask) return 1;
    return 0;
}

static void rtc_registers(void)
{
    hex("rtc reg a (without uip)", cmos(RTC_A) & 0x7F);
    hex("rtc reg b", cmos(RTC_B));
    hex("rtc reg c", cmos(RTC_C));
    hex("rtc reg d", cmos(RTC_D));
    static const uint8_t mem[] = {0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35, 0x5B, 0x5C, 0x5D};
    printf("rtc cmos memory");
    for (unsigned i = 0; i < sizeof(mem); i++) printf(" %02x", cmos(mem[i]));
    printf("\n");
    uint32_t sum = 0;
    for (int i = 0x0E; i < 0x80; i++)
        if (i != RTC_CENTURY && i != 0x40) sum = sum * 31 + cmos((uint8_t)i);
    hex("rtc cmos ram hash", sum);
    outb(0x70, 0x8D); /* bit 7 (NMI off) selects the same register */
    hex("rtc reg d with nmi bit", inb(0x71));
    cmos_set(RTC_A, 0xFF);
    hex("rtc reg a all ones (without uip)", cmos(RTC_A) & 0x7F);
    cmos_set(RTC_A, 0x26);
    cmos_set(RTC_B, 0x92); /* SET with UIE: UIE is dropped */
    hex("rtc reg b set with uie", cmos(RTC_B));
    cmos_set(RTC_B, 0x02);
    outb(0x70, 0x0C);
    hex("rtc index port read", inb(0x70));
    cmos_set(0x40, 0xA5);
    hex("rtc cmos ram", cmos(0x40));
    cmos_set(RTC_D, 0);
    cmos_set(RTC_C, 0xFF);
    hex("rtc c and d after writes", cmos(RTC_C) << 8 | cmos(RTC_D));

    /* Set 2099-12-31 23:59:58 (Thursday) in BCD, 24 hours, then read in other formats. */
    cmos_set(RTC_B, 0x82);
    cmos_set(RTC_SEC, 0x58);
    cmos_set(RTC_MIN, 0x59);
    cmos_set(RTC_HOUR, 0x23);
    cmos_set(RTC_WDAY, 0x05);
    cmos_set(RTC_MDAY, 0x31);
    cmos_set(RTC_MONTH, 0x12);
    cmos_set(RTC_YEAR, 0x99);
    cmos_set(RTC_CENTURY, 0x20);
    printf("set mode time %02x:%02x:%02x\n", cmos(RTC_HOUR), cmos(RTC_MIN), cmos(RTC_SEC));
    cmos_set(RTC_B, 0x02); /* run */
    cmos(RTC_C);
    flag("update-ended flag", wait_flag(0x10));
    flag("update-ended flag again", wait_flag(0x10));
    while (cmos(RTC_A) & 0x80) {}
    printf("bcd 24h %02x-%02x-%02x%02x %02x:%02x:%02x wday %02x\n", cmos(RTC_MDAY),
           cmos(RTC_MONTH), cmos(RTC_CENTURY), cmos(RTC_YEAR), cmos(RTC_HOUR), cmos(RTC_MIN),
           cmos(RTC_SEC), cmos(RTC_WDAY));

    cmos_set(RTC_B, 0x80); /* set mode, 12 hours */
    cmos_set(RTC_HOUR, 0x91); /* 11 pm */
    cmos_set(RTC_MIN, 0x30);
    cmos_set(RTC_SEC, 0x00);
    cmos_set(RTC_B, 0x04); /* binary, 12 hours, running */
    while (cmos(RTC_A) & 0x80) {}
    printf("binary 12h hour %02x minute %02x\n", cmos(RTC_HOUR), cmos(RTC_MIN));
    cmos_set(RTC_B, 0x06); /* binary, 24 hours */
    while (cmos(RTC_A) & 0x80) {}
    printf("binary 24h hour %02x minute %02x\n", cmos(RTC_HOUR), cmos(RTC_MIN));

    /* Alarm at any hour and minute, at the next second. */
    uint8_t sec;
    while (cmos(RTC_A) & 0x80) {}
    sec = cmos(RTC_SEC);
    cmos_set(RTC_SEC_ALARM, (uint8_t)((sec + 2) % 60));
    cmos_set(RTC_MIN_ALARM, 0xFF);
    cmos_set(RTC_HOUR_ALARM, 0xFF);
    cmos(RTC_C);
    flag("alarm flag", wait_flag(0x20));
    printf("alarm second reached %s\n", (cmos(RTC_SEC) - sec + 60) % 60 >= 2 ? "yes" : "no");
    cmos_set(RTC_B, 0x02);
}

static void rtc_through_ioapic(void)
{
    /* Periodic interrupt at 1024 Hz on IRQ 8: I/O APIC pin 8, level-triggered. */
    ioapic_route(8, V_RTC, 1);
    cmos_set(RTC_A, 0x26);
    cmos(RTC_C);
    cmos_set(RTC_B, 0x42); /* PIE, 24 hours, BCD */
    sti();
    while (rtc_irqs < 16) hlt();
    cli();
    cmos_set(RTC_B, 0x02);
    cmos(RTC_C);
    printf("rtc periodic irqs %d flags %02x remote irr seen %s\n", rtc_irqs, (unsigned)rtc_flags,
           rtc_remote_irr ? "yes" : "no");
    hex("rtc pin 8 after eoi", ioapic(IOAPIC1, 0x10 + 2 * 8));

    /* Update-ended interrupts instead, edge-triggered this time. */
    rtc_irqs = 0;
    rtc_flags = 0;
    ioapic_route(8, V_RTC, 0);
    cmos_set(RTC_B, 0x12);
    sti();
    while (rtc_irqs < 2) hlt();
    cli();
    cmos_set(RTC_B, 0x02);
    printf("rtc update irqs %d flags %02x\n", rtc_irqs, (unsigned)rtc_flags);
    ioapic_set(IOAPIC1, 0x10 + 2 * 8, 0x10000);
}

/* Busy-loop iterations between interrupts: timing-dependent, repeatable under -icount. */
static void spins(void)
{
    lapic_enable();
    lapic_set(DIVIDE, 0xB);
    lapic_set(LVT_TIMER, (1u << 17) | V_TIMER);
    lapic_set(INIT_COUNT, 999999); /* 1 ms */
    sti();
    for (int tick = 0; tick < 3; tick++) {
        int seen = timer_ticks;
        uint32_t n = 0;
        while (timer_ticks == seen) n++;
        printf("lapic tick %d: %u spins\n", tick, (unsigned)n);
    }
    lapic_set(LVT_TIMER, 1u << 16);
    ioapic_route(8, V_RTC, 1);
    cmos_set(RTC_A, 0x23); /* 8192 Hz */
    cmos(RTC_C);
    cmos_set(RTC_B, 0x42);
    for (int tick = 0; tick < 3; tick++) {
        int seen = rtc_irqs;
        uint32_t n = 0;
        while (rtc_irqs == seen) n++;
        printf("rtc tick %d: %u spins\n", tick, (unsigned)n);
    }
    cli();
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    idt_set_gate(V_TIMER, on_timer);
    idt_set_gate(V_IPI, on_ipi);
    idt_set_gate(V_LOW, on_low_ipi);
    idt_set_gate(V_RTC, on_rtc);
    const char *cmdline = (mbi->flags & 4) ? (const char *)mbi->cmdline : "";
    if (strlen(cmdline) >= 6 && !strcmp(cmdline + strlen(cmdline) - 6, " spins")) {
        spins();
        return 0;
    }
    lapic_reset_state();
    ioapic_state("ioapic1", IOAPIC1);
    ioapic_state("ioapic2", IOAPIC2);
    lapic_writes();
    priorities_and_ipis();
    lapic_timer();
    rtc_registers();
    rtc_through_ioapic();
    puts("done\n");
    return 0;
}
