/*
 * Leaves the machine the way the command line says, to compare how emulators end:
 *   poweroff  ACPI GED sleep control <- SLP_EN | SLP_TYP 5 (0x34): QEMU exits 0
 *   reset     ACPI GED reset register <- 0x42: with -no-reboot QEMU exits 0
 *   triple    an exception with an empty IDT (triple fault): with -no-reboot, exit 0
 *   exit N    isa-debug-exit with N: status (N << 1) | 1
 * Power-off and reset requests take effect asynchronously in QEMU, so the guest
 * then waits about 1 s (PIT channel 0, polled) even on a busy host; if it still runs
 * (no ACPI), it says so and exits 5.
 */
#include "guest.h"

#define GED_SLEEP_CTL 0xFEA00200u
#define GED_RESET 0xFEA00202u

/* ~55 ms per round: PIT channel 0, mode 0, count 65535, polled through read-back. */
static void wait_pit_rounds(int rounds)
{
    while (rounds--) {
        outb(0x43, 0x30);           /* channel 0, lobyte/hibyte, mode 0 */
        outb(0x40, 0xFF);
        outb(0x40, 0xFF);
        do outb(0x43, 0xE2);        /* read-back: status of channel 0 */
        while (!(inb(0x40) & 0x80)); /* OUT goes high at terminal count */
    }
}

static const char *last_word(const char *s)
{
    const char *word = s;
    for (; *s; s++)
        if (*s == ' ' && s[1]) word = s + 1;
    return word;
}

static int number(const char *s)
{
    int n = 0;
    while (*s >= '0' && *s <= '9') n = n * 10 + (*s++ - '0');
    return n;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    const char *cmdline = (const char *)mbi->cmdline;
    const char *what = last_word(cmdline);
    printf("power guest: %s\n", what);
    if (!strcmp(what, "poweroff")) {
        *(volatile uint8_t *)GED_SLEEP_CTL = 0x34;
    } else if (!strcmp(what, "reset")) {
        *(volatile uint8_t *)GED_RESET = 0x42;
    } else if (!strcmp(what, "triple")) {
        static const struct { uint16_t limit; uint32_t base; } __attribute__((packed)) empty = {0, 0};
        __asm__ volatile("lidt %0; int3" : : "m"(empty));
    } else if (what[0] >= '0' && what[0] <= '9') {
        exit(number(what));
    }
    wait_pit_rounds(18);
    printf("still running\n");
    return 5;
}
