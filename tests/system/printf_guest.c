/* The guest runtime's formatter, printed on COM1; the exit code is the number of lines. */
#include "guest.h"

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    char buf[16];
    int lines = 0;
    (void)mbi;
    lines += printf("magic %#x %08x %X\n", magic, magic, magic) > 0;
    lines += printf("signed %d %i %d %lld %lld\n", 0, -1, 2147483647, -9223372036854775807ll - 1,
                    1234567890123ll) > 0;
    lines += printf("unsigned %u %u %llu %o\n", 0u, 4294967295u, 18446744073709551615ull, 8u) > 0;
    lines += printf("width [%5d] [%-5d] [%05d] [%#06x] [%5s] [%-5s] [%3c]\n", 42, 42, -42, 0xab,
                    "ab", "ab", 'z') > 0;
    lines += printf("pointer %p percent %% octal %#o\n", (void *)0xb8000, 8u) > 0;
    int n = snprintf(buf, sizeof(buf), "%s-%d-%x", "truncated", 12345, 0xabcdef);
    lines += printf("snprintf %d '%s'\n", n, buf) > 0;
    return lines;
}
