/*
 * Register-level checks of the microvm's legacy devices, printed on COM1 so that two
 * emulators can be compared line by line: the 16550A UART (divisor latch, FIFOs and
 * trigger levels, loopback, overrun, interrupt identification, character timeout), the
 * 8259A pair (IMR, ELCR masks, IRR/ISR, poll mode, EOI) driven by the 8254 PIT
 * (read-back status, latch, lobyte access, terminal count). Only timing-independent
 * facts are printed.
 */
#include "guest.h"

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };


/* Output collects here while COM1 is in loopback, and is printed afterwards. */
static char log[4096];
static int log_len;

static void say(const char *text)
{
    while (*text && log_len < (int)sizeof(log)) log[log_len++] = *text++;
}

static void line(const char *what, uint32_t value)
{
    char text[96];
    snprintf(text, sizeof(text), "%s %02x\n", what, (unsigned)value);
    say(text);
}

static void flag(const char *what, int ok)
{
    char text[96];
    snprintf(text, sizeof(text), "%s %s\n", what, ok ? "yes" : "no");
    say(text);
}

static void flush_log(void)
{
    for (int i = 0; i < log_len; i++) putc(log[i]);
    log_len = 0;
}

static int wait_for(uint16_t port, uint8_t mask, uint8_t want)
{
    for (uint32_t i = 0; i < 50000000u; i++)
        if ((inb(port) & mask) == want) return 1;
    return 0;
}

static void uart(void)
{
    outb(COM1 + IER, 0);
    outb(COM1 + LCR, 0x83);
    outb(COM1 + DLL, 0x01);
    outb(COM1 + DLM, 0x00);
    line("uart dll", inb(COM1 + DLL));
    line("uart dlm", inb(COM1 + DLM));
    outb(COM1 + LCR, 0x03);
    line("uart lcr", inb(COM1 + LCR));
    outb(COM1 + SCR, 0x5A);
    line("uart scr", inb(COM1 + SCR));

    outb(COM1 + MCR, 0x1F); /* loopback, OUT2, OUT1, RTS, DTR */
    line("uart loop msr", inb(COM1 + MSR));
    outb(COM1 + FCR, 0x00);
    outb(COM1 + THR, 'a');
    outb(COM1 + THR, 'b'); /* no FIFO: overruns 'a' */
    line("uart nofifo lsr", inb(COM1 + LSR));
    line("uart nofifo lsr again", inb(COM1 + LSR));
    line("uart nofifo rbr", inb(COM1 + RBR));

    outb(COM1 + FCR, 0xC7); /* FIFO on, both cleared, trigger 14 */
    line("uart fifo iir", inb(COM1 + IIR));
    outb(COM1 + LCR, 0x83); /* slowest rate: no character timeout during the checks */
    outb(COM1 + DLL, 0xFF);
    outb(COM1 + DLM, 0xFF);
    outb(COM1 + LCR, 0x03);
    outb(COM1 + IER, 0x01);
    for (const char *s = "0123"; *s; s++) outb(COM1 + THR, (uint8_t)*s);
    line("uart below trigger iir", inb(COM1 + IIR));
    for (const char *s = "456789abcd"; *s; s++) outb(COM1 + THR, (uint8_t)*s);
    line("uart at trigger iir", inb(COM1 + IIR));
    for (const char *s = "efg"; *s; s++) outb(COM1 + THR, (uint8_t)*s); /* 17 bytes */
    line("uart overrun lsr", inb(COM1 + LSR));
    char data[32];
    int n = 0;
    while ((inb(COM1 + LSR) & 0x01) && n < (int)sizeof(data) - 1) data[n++] = (char)inb(COM1 + RBR);
    data[n] = 0;
    say("uart fifo data ");
    say(data);
    say("\n");
    line("uart drained iir", inb(COM1 + IIR));
    line("uart drained lsr", inb(COM1 + LSR));

    outb(COM1 + FCR, 0x47); /* trigger 4 */
    outb(COM1 + LCR, 0x83);
    outb(COM1 + DLL, 0x01);
    outb(COM1 + DLM, 0x00);
    outb(COM1 + LCR, 0x03);
    outb(COM1 + THR, 'x');
    flag("uart character timeout", wait_for(COM1 + IIR, 0x0F, 0x0C));
    line("uart timeout rbr", inb(COM1 + RBR));
    line("uart after timeout iir", inb(COM1 + IIR));

    outb(COM1 + IER, 0x02); /* THR empty interrupt */
    line("uart thre iir", inb(COM1 + IIR));
    line("uart thre iir read again", inb(COM1 + IIR));
    outb(COM1 + IER, 0x04); /* line status interrupt */
    outb(COM1 + FCR, 0x00);
    outb(COM1 + THR, '1');
    outb(COM1 + THR, '2'); /* overrun */
    line("uart line status iir", inb(COM1 + IIR));
    line("uart line status lsr", inb(COM1 + LSR));
    line("uart after lsr read iir", inb(COM1 + IIR));
    inb(COM1 + RBR);
    outb(COM1 + IER, 0x00);
    outb(COM1 + FCR, 0x00);
    outb(COM1 + MCR, 0x0B);
    flush_log();
}

static void pic_and_pit(void)
{
    pic_init(0x20, 0x28, 0); /* vectors 0x20/0x28, everything masked */
    outb(0x21, 0xA5);
    line("pic imr", inb(0x21));
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    outb(0x4D0, 0xFF);
    outb(0x4D1, 0xFF);
    line("pic elcr master", inb(0x4D0));
    line("pic elcr slave", inb(0x4D1));
    outb(0x4D0, 0x00);
    outb(0x4D1, 0x00);

    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, 0x00);
    outb(0x40, 0x10);
    outb(0x43, 0xE2); /* read-back: status only, channel 0 */
    line("pit ch0 status", inb(0x40) & 0x3F);
    outb(0x43, 0x00);
    uint16_t first = inb(0x40);
    first |= (uint16_t)inb(0x40) << 8;
    uint16_t second = first;
    for (int i = 0; i < 1000000 && second == first; i++) {
        outb(0x43, 0x00);
        second = inb(0x40);
        second |= (uint16_t)inb(0x40) << 8;
    }
    flag("pit ch0 counting", second != first && first <= 0x1000 && second <= 0x1000);

    outb(0x21, 0xFE); /* unmask IRQ 0 only; interrupts stay disabled in the CPU */
    outb(0x20, 0x0A);
    flag("pic irq0 requested", wait_for(0x20, 0x01, 0x01));
    outb(0x20, 0x0C); /* poll */
    line("pic poll", inb(0x20));
    outb(0x20, 0x0B);
    line("pic isr after poll", inb(0x20));
    outb(0x20, 0x20);
    line("pic isr after eoi", inb(0x20));
    outb(0x21, 0xFF);
    outb(0x20, 0x0A);

    /* Two sources at once: IRQ 0 (the PIT) and IRQ 4 (the UART in loopback, data ready). */
    outb(COM1 + MCR, 0x1B);
    outb(COM1 + IER, 0x01);
    outb(COM1 + THR, 'z');
    outb(0x21, 0xEE); /* IRQ 0 and 4 */
    outb(0x20, 0x0A);
    flag("pic irq0 and irq4 requested", wait_for(0x20, 0x11, 0x11));
    outb(0x20, 0x0C);
    line("pic poll with two requests", inb(0x20));
    outb(0x20, 0xA0); /* rotate on non-specific EOI: IRQ 0 becomes the lowest */
    outb(0x20, 0x0C);
    line("pic poll after rotation", inb(0x20));
    outb(0x20, 0x0B);
    line("pic isr after rotation", inb(0x20));
    outb(0x20, 0x64); /* specific EOI for IRQ 4 */
    line("pic isr after specific eoi", inb(0x20));
    outb(0x20, 0xC7); /* set priority: IRQ 0 highest again */
    outb(0x20, 0x0A);
    inb(COM1 + RBR);
    line("pic irr after the uart was read", inb(0x20) & 0x10);
    outb(COM1 + IER, 0x00);
    outb(COM1 + MCR, 0x0B);
    outb(0x21, 0xFF);

    outb(0x43, 0x10); /* channel 0, lobyte only, mode 0 */
    outb(0x40, 0x80);
    outb(0x43, 0xE2);
    line("pit ch0 lobyte status", inb(0x40) & 0x3F);
    outb(0x43, 0x30); /* channel 0, mode 0, terminal count far away */
    outb(0x40, 0xFF);
    outb(0x40, 0xFF);
    outb(0x43, 0xE2);
    line("pit ch0 mode 0 status", inb(0x40));
    line("port 0x61 (no speaker logic on microvm)", inb(0x61));
    flush_log();
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    say("devices guest\n");
    flush_log();
    uart();
    pic_and_pit();
    say("done\n");
    flush_log();
    return 0;
}
