/*
 * A virtio-rng driver for -M microvm (polling, legacy or modern virtio-mmio): finds
 * the entropy device, reads random bytes through its requestq and reports on COM1
 * what a user of the device cares about: the lengths the device wrote, that the
 * bytes are not zeroes, differ between requests and look random. Everything it
 * prints is the same under any correct device, so the output compares with QEMU's.
 *
 * "limit" on the command line reads for a device started with max-bytes=32:
 * a 64-byte request gets the period's 32 bytes, the next waits for the next period.
 */
#include "guest.h"
#include "virtio_mmio.h"

static uint8_t ring[VIRTIO_RING_BYTES] __attribute__((aligned(4096)));
static uint8_t small[16], pair[2][32], page[4096], limited[64], later[16];

static int distinct_values(const uint8_t *p, uint32_t n)
{
    static uint8_t seen[256];
    int count = 0;
    memset(seen, 0, sizeof(seen));
    for (uint32_t i = 0; i < n; i++)
        if (!seen[p[i]]++) count++;
    return count;
}

static uint32_t read_into(struct virtio_dev *dev, void *buf, uint32_t len)
{
    struct virtio_buf b = {buf, len, VIRTIO_BUF_WRITE};
    return virtio_request(dev, &b, 1);
}

static int entropy(struct virtio_dev *dev)
{
    uint32_t got = read_into(dev, small, sizeof(small));
    printf("16-byte buffer: %u bytes, %s\n", (unsigned)got,
           all_zero(small, sizeof(small)) ? "all zero" : "not all zero");

    struct virtio_buf two[2] = {{pair[0], 32, VIRTIO_BUF_WRITE}, {pair[1], 32, VIRTIO_BUF_WRITE}};
    got = virtio_request(dev, two, 2);
    printf("two 32-byte buffers in one chain: %u bytes, halves %s\n", (unsigned)got,
           memcmp(pair[0], pair[1], 32) ? "differ" : "equal");

    got = read_into(dev, page, sizeof(page));
    int values = distinct_values(page, sizeof(page));
    printf("4096-byte buffer: %u bytes, %s distinct byte values\n", (unsigned)got,
           values > 200 ? "over 200" : "too few");
    printf("a second 16 bytes %s the first\n",
           (read_into(dev, page, 16), memcmp(page, small, 16)) ? "differ from" : "repeat");
    return got == sizeof(page) && values > 200 ? 0 : 1;
}

static int rate_limited(struct virtio_dev *dev)
{
    uint32_t first = read_into(dev, limited, sizeof(limited));
    printf("64-byte request: %u bytes this period\n", (unsigned)first);
    puts("waiting for the next period\n");
    uint32_t second = read_into(dev, later, sizeof(later));
    printf("16-byte request: %u bytes, %s the first\n", (unsigned)second,
           memcmp(later, limited, sizeof(later)) ? "differ from" : "repeat");
    return first == 32 && second == 16 ? 0 : 1;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    int limit = !strcmp(multiboot_append(mbi), "limit");

    struct virtio_dev dev;
    if (!virtio_find(&dev, VIRTIO_ID_RNG)) {
        puts("no virtio-rng device\n");
        return 1;
    }
    const char *failed = virtio_init(&dev, 0, ring, 8);
    printf("virtio-rng: slot %d version %d features %08x queue max %u\n", dev.slot, dev.version,
           (unsigned)dev.features, (unsigned)virtio_read(&dev, VIRTIO_MMIO_QUEUE_NUM_MAX));
    if (failed) {
        printf("FAIL %s\n", failed);
        return 1;
    }
    int status = limit ? rate_limited(&dev) : entropy(&dev);
    puts("done\n");
    return status;
}
