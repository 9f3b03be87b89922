/*
 * CPU-bound guest of benchmarks/bench_cpu.py: CRC-32 over a buffer, a sieve of
 * Eratosthenes and a byte-copy loop (a few million instructions in all). Prints
 * its results on COM1 so that both emulators can be checked to agree; built with
 * the runtime of tests/guests (exit through isa-debug-exit).
 */
#include "guest.h"

#define N 32768

static uint8_t src[N], dst[N];
static uint32_t table[256];
static uint8_t composite[200000];

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

static uint32_t sieve(uint32_t limit)
{
    uint32_t count = 0;
    for (uint32_t i = 2; i < limit; i++) {
        if (composite[i]) continue;
        count++;
        for (uint32_t j = i * 2; j < limit; j += i) composite[j] = 1;
    }
    return count;
}

static void copy(volatile uint8_t *to, const volatile uint8_t *from, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) to[i] = from[i];
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t seed = 12345;
    for (uint32_t i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        src[i] = (uint8_t)(seed >> 16);
    }
    uint32_t crc = 0;
    for (int pass = 0; pass < 4; pass++) crc = crc * 31 + crc32(src, N - pass);
    printf("crc32 %08x\n", crc);
    printf("primes %u\n", sieve(sizeof(composite)));
    for (int pass = 0; pass < 4; pass++) copy(dst, src, N);
    printf("copy %08x\n", crc32(dst, N));
    return 0;
}
