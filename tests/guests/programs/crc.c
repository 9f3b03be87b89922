/* Checksums: CRC-32 (table and bitwise), CRC-16/CCITT, Adler-32, FNV-1a, a rotate-xor hash. */
#include "guest.h"

static uint8_t data[4096];
static uint32_t table[256];

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
    }
    return ~c;
}

static uint32_t crc32_table(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

static uint16_t crc16_ccitt(const uint8_t *p, size_t n)
{
    uint16_t c = 0xFFFF;
    while (n--) {
        c ^= (uint16_t)(*p++ << 8);
        for (int k = 0; k < 8; k++) c = c & 0x8000 ? (uint16_t)((c << 1) ^ 0x1021) : (uint16_t)(c << 1);
    }
    return c;
}

static uint32_t adler32(const uint8_t *p, size_t n)
{
    uint32_t a = 1, b = 0;
    while (n--) { a = (a + *p++) % 65521; b = (b + a) % 65521; }
    return (b << 16) | a;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (n--) h = (h ^ *p++) * 0x100000001b3ull;
    return h;
}

static inline uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static uint32_t murmur_mix(const uint32_t *w, size_t n)
{
    uint32_t h = 0x9747b28c;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = w[i] * 0xcc9e2d51u;
        k = rotl(k, 15) * 0x1b873593u;
        h = rotl(h ^ k, 13) * 5 + 0xe6546b64u;
    }
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    return h;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t x = 0x12345678;
    for (size_t i = 0; i < sizeof data; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        data[i] = (uint8_t)x;
    }
    printf("crc32 %08x %08x\n", crc32_bitwise(data, 1024), crc32_table(data, sizeof data));
    printf("crc32 check %08x\n", crc32_table((const uint8_t *)"123456789", 9));
    printf("crc16 %04x\n", crc16_ccitt(data, sizeof data));
    printf("adler32 %08x\n", adler32(data, sizeof data));
    printf("fnv1a64 %016llx\n", (unsigned long long)fnv1a64(data, sizeof data));
    printf("murmur %08x\n", murmur_mix((const uint32_t *)data, sizeof data / 4));
    return crc32_table((const uint8_t *)"123456789", 9) != 0xCBF43926u;
}
