/* printf-style formatting: the runtime's printf/snprintf and a formatter of the program's own. */
#include "guest.h"

/* A second formatter, written here, so the compiled code of va_arg walking and digit
 * conversion is exercised at each optimization level. */
static int format(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = 0;
#define EMIT(ch) do { if (n + 1 < size) out[n] = (ch); n++; } while (0)
    for (; *fmt; fmt++) {
        if (*fmt != '%') { EMIT(*fmt); continue; }
        fmt++;
        int width = 0, left = 0, zero = 0;
        if (*fmt == '-') { left = 1; fmt++; }
        if (*fmt == '0') { zero = 1; fmt++; }
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        char digits[24];
        int len = 0, neg = 0;
        unsigned base = 10;
        uint32_t v = 0;
        switch (*fmt) {
        case 'd': { int x = va_arg(ap, int); neg = x < 0; v = neg ? 0u - (uint32_t)x : (uint32_t)x; break; }
        case 'u': v = va_arg(ap, unsigned); break;
        case 'x': v = va_arg(ap, unsigned); base = 16; break;
        case 'b': v = va_arg(ap, unsigned); base = 2; break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            int l = (int)strlen(s);
            for (int k = l; !left && k < width; k++) EMIT(' ');
            while (*s) EMIT(*s++);
            for (int k = l; left && k < width; k++) EMIT(' ');
            continue;
        }
        case 'c': EMIT((char)va_arg(ap, int)); continue;
        default: EMIT('%'); EMIT(*fmt); continue;
        }
        do { digits[len++] = "0123456789abcdef"[v % base]; v /= base; } while (v);
        int total = len + neg;
        if (!left && !zero) for (int k = total; k < width; k++) EMIT(' ');
        if (neg) EMIT('-');
        if (!left && zero) for (int k = total; k < width; k++) EMIT('0');
        while (len) EMIT(digits[--len]);
        if (left) for (int k = total; k < width; k++) EMIT(' ');
    }
    if (size) out[n < size ? n : size - 1] = 0;
    va_end(ap);
    return (int)n;
#undef EMIT
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    char buf[128];
    static const int ints[] = {0, 1, -1, 42, -42, 2147483647, -2147483647 - 1, 100000};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int n = format(buf, sizeof buf, "[%d|%6d|%-6d|%06d|%x|%b]", ints[i], ints[i], ints[i], ints[i],
                       (unsigned)ints[i], (unsigned)ints[i] & 0xff);
        printf("%s %d\n", buf, n);
        printf("<%d|%5i|%-5u|%08x|%X|%o|%c>\n", ints[i], ints[i], (unsigned)ints[i], ints[i], ints[i],
               (unsigned)ints[i] & 0777, 'A' + (int)(i % 26));
    }
    format(buf, sizeof buf, "%s|%10s|%-10s|%c%c", "abc", "right", "left", 'x', 'y');
    printf("%s\n", buf);
    printf("%lld %llx %llu\n", -1234567890123ll, 0xdeadbeefcafebabeull, 18446744073709551615ull);
    printf("%hd %hu %zu %p\n", (short)-5, (unsigned short)65535, (size_t)123, (void *)0x1234);
    int n = snprintf(buf, 10, "%s", "truncated output");
    printf("%s %d %u\n", buf, n, (unsigned)strlen(buf));
    int m = format(buf, 16, "%5d|%-4x|", 12345678, 0xabcu);
    printf("%s %d\n", buf, m);
    printf("100%% done\n");
    return 0;
}
