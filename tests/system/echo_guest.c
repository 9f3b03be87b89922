/* Reads a line from COM1 (polling LSR bit 0), answers it upper-cased, exits with its length. */
#include "guest.h"

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    char line[128];
    int n = 0;
    (void)magic;
    (void)mbi;
    puts("ready\n");
    for (;;) {
        while (!(inb(COM1 + 5) & 0x01)) {}
        char c = (char)inb(COM1);
        if (c == '\n' || c == '\r' || n == (int)sizeof(line) - 1) break;
        line[n++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    line[n] = '\0';
    printf("got '%s'\n", line);
    return n;
}
