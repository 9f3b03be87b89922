/* 64-bit arithmetic: libgcc's division and modulo, multiplication, shifts, comparisons. */
#include "guest.h"

static volatile uint64_t sink;

static const int64_t values[] = {
    0, 1, -1, 2, -2, 7, -7, 10, 1000000007, -1000000007,
    0x7fffffffll, 0x80000000ll, -0x80000000ll, 0xffffffffll, 0x100000000ll,
    0x123456789abcdefll, -0x123456789abcdefll, 0x7fffffffffffffffll,
    (int64_t)0x8000000000000000ull, 999999999999ll, -12345678901ll,
};
#define COUNT (sizeof values / sizeof values[0])

static uint64_t isqrt(uint64_t n)
{
    uint64_t x = n, y = (x + 1) / 2;
    while (y < x) { x = y; y = (x + n / x) / 2; }
    return x;
}

static uint64_t powmod(uint64_t b, uint64_t e, uint64_t m)
{
    uint64_t r = 1;
    b %= m;
    while (e) {
        if (e & 1) r = (r * b) % m;
        b = (b * b) % m;
        e >>= 1;
    }
    return r;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    uint64_t h = 0;
    for (size_t i = 0; i < COUNT; i++) {
        for (size_t j = 0; j < COUNT; j++) {
            int64_t a = values[i], b = values[j];
            if (b == 0 || (b == -1 && a == (int64_t)0x8000000000000000ull)) continue;
            uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
            int64_t q = a / b, r = a % b;
            uint64_t uq = ua / ub, ur = ua % ub;
            if (q * b + r != a || uq * ub + ur != ua) printf("bad %lld %lld\n", (long long)a, (long long)b);
            h = (h ^ (uint64_t)q) * 0x100000001b3ull;
            h = (h ^ (uint64_t)r) * 0x100000001b3ull;
            h = (h ^ uq) * 0x100000001b3ull;
            h = (h ^ ur) * 0x100000001b3ull;
        }
    }
    printf("div hash %016llx\n", (unsigned long long)h);
    printf("q %lld r %lld\n", (long long)(values[15] / 12345), (long long)(values[16] % 977));
    printf("uq %llu ur %llu\n", (unsigned long long)(0xfedcba9876543210ull / 1000003u),
           (unsigned long long)(0xfedcba9876543210ull % 1000003u));
    printf("mul %016llx\n", (unsigned long long)(0x123456789ull * 0xabcdef01ull));
    for (int s = 0; s < 64; s += 13)
        printf("shift %d %016llx %016llx %016llx\n", s, (unsigned long long)(values[15] << s),
               (unsigned long long)((uint64_t)values[16] >> s), (unsigned long long)(values[16] >> s));
    printf("isqrt %llu %llu\n", (unsigned long long)isqrt(1ull << 62), (unsigned long long)isqrt(999999999999ull));
    printf("powmod %llu\n", (unsigned long long)powmod(3, 1000000, 4294967291ull));
    printf("cmp %d %d %d\n", values[11] < values[14], (uint64_t)values[2] > (uint64_t)values[14],
           values[17] > values[18]);
    sink = h;
    return 0;
}
