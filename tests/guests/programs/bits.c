/* Bit manipulation and narrow integer types: popcount, clz/ctz (BSR/BSF), rotates, byte
 * swaps, 8/16-bit signed and unsigned arithmetic, saturation, struct copies and fills. */
#include "guest.h"

struct record { char name[13]; short id; int value; unsigned char flags[7]; };

static unsigned popcount(uint32_t x) { unsigned n = 0; while (x) { x &= x - 1; n++; } return n; }

static volatile uint32_t inputs[] = {0, 1, 0x80000000u, 0xffffffffu, 0x12345678u, 0x00f000f0u, 0xdeadbeefu};

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        uint32_t x = inputs[i];
        printf("%08x pop %u/%d clz %d ctz %d bswap %08x rot %08x %08x\n", x, popcount(x),
               __builtin_popcount(x), x ? __builtin_clz(x) : 32, x ? __builtin_ctz(x) : 32,
               __builtin_bswap32(x), (x << 7) | (x >> 25), (x >> 3) | (x << 29));
        int8_t b = (int8_t)x;
        uint8_t ub = (uint8_t)x;
        int16_t w = (int16_t)x;
        uint16_t uw = (uint16_t)(x >> 4);
        printf("  b %d ub %u w %d uw %u b*w %d ub/3 %u w>>3 %d uw>>3 %u sat %d\n", b, ub, w, uw,
               b * w, ub / 3u, w >> 3, uw >> 3u, w > 1000 ? 1000 : w < -1000 ? -1000 : w);
        int32_t s = (int32_t)x;
        printf("  sdiv %d smod %d udiv %u abs %d min %d max %d\n", s / 7, s % 7, x / 7u,
               s < 0 ? -s : s, s < 100 ? s : 100, s > -5 ? s : -5);
    }
    static struct record recs[6], copy[6];
    for (int i = 0; i < 6; i++) {
        memset(&recs[i], 0, sizeof recs[i]);
        for (int k = 0; k < 12; k++) recs[i].name[k] = (char)('a' + (i * 5 + k) % 26);
        recs[i].id = (short)(i * -1000);
        recs[i].value = i * 123456789;
        memset(recs[i].flags, 0x40 + i, sizeof recs[i].flags);
    }
    for (int i = 0; i < 6; i++) copy[5 - i] = recs[i];
    uint32_t h = 0;
    const unsigned char *p = (const unsigned char *)copy;
    for (size_t i = 0; i < sizeof copy; i++) h = (h << 5) + h + p[i];
    printf("records %u bytes hash %08x %s %d %d\n", (unsigned)sizeof copy, h, copy[0].name, copy[0].id,
           copy[0].value);
    printf("strlen %u strcmp %d %d\n", (unsigned)strlen(copy[2].name), strcmp(copy[1].name, copy[2].name) > 0,
           strcmp(copy[3].name, recs[2].name));
    return 0;
}
