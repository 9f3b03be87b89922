/* The polling virtio-mmio driver of the test guests (see virtio_mmio.h). */
#include "virtio_mmio.h"

#include "guest.h"

enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8 };
enum { D_NEXT = 1 };

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; } __attribute__((packed));

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static volatile uint16_t *u16_at(volatile uint8_t *p) { return (volatile uint16_t *)p; }

int virtio_find(struct virtio_dev *dev, uint32_t device_id)
{
    for (int slot = VIRTIO_MMIO_SLOTS - 1; slot >= 0; slot--) {
        dev->base = VIRTIO_MMIO_BASE + 0x200u * (uint32_t)slot;
        if (virtio_read(dev, VIRTIO_MMIO_MAGIC) == 0x74726976
            && virtio_read(dev, VIRTIO_MMIO_DEVICE_ID) == device_id) {
            dev->slot = slot;
            dev->version = (int)virtio_read(dev, VIRTIO_MMIO_VERSION);
            return 1;
        }
    }
    return 0;
}

const char *virtio_init(struct virtio_dev *dev, uint32_t features, uint8_t *ring, unsigned qsize)
{
    if (qsize > VIRTIO_QUEUE_MAX) return "queue size";
    virtio_write(dev, VIRTIO_MMIO_STATUS, 0);
    virtio_write(dev, VIRTIO_MMIO_STATUS, S_ACK);
    virtio_write(dev, VIRTIO_MMIO_STATUS, S_ACK | S_DRIVER);
    virtio_write(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    dev->features = virtio_read(dev, VIRTIO_MMIO_DEVICE_FEATURES);
    uint32_t status = S_ACK | S_DRIVER;
    virtio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    virtio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES, features & dev->features);
    if (dev->version == 1) {
        virtio_write(dev, VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
    } else {
        virtio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        virtio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VIRTIO_F_VERSION_1 */
        status |= S_FEATURES_OK;
        virtio_write(dev, VIRTIO_MMIO_STATUS, status);
        if (!(virtio_read(dev, VIRTIO_MMIO_STATUS) & S_FEATURES_OK)) return "features";
    }
    virtio_write(dev, VIRTIO_MMIO_QUEUE_SEL, 0);
    if (virtio_read(dev, VIRTIO_MMIO_QUEUE_NUM_MAX) < qsize) return "queue size";
    virtio_write(dev, VIRTIO_MMIO_QUEUE_NUM, qsize);
    memset(ring, 0, VIRTIO_RING_BYTES);
    dev->qsize = qsize;
    dev->avail_idx = dev->last_used = 0;
    dev->desc = ring;
    dev->avail = ring + 16 * qsize;
    dev->used = ring + 4096; /* the legacy layout with QueueAlign 4096 */
    if (dev->version == 1) {
        virtio_write(dev, VIRTIO_MMIO_QUEUE_ALIGN, 4096);
        virtio_write(dev, VIRTIO_MMIO_QUEUE_PFN, (uint32_t)ring >> 12);
    } else {
        const uint32_t regs[3] = {VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                                  VIRTIO_MMIO_QUEUE_USED_LOW};
        volatile uint8_t *addrs[3] = {dev->desc, dev->avail, dev->used};
        for (int i = 0; i < 3; i++) {
            virtio_write(dev, regs[i], (uint32_t)addrs[i]);
            virtio_write(dev, regs[i] + 4, 0);
        }
        virtio_write(dev, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    virtio_write(dev, VIRTIO_MMIO_STATUS, status | S_DRIVER_OK);
    return 0;
}

void virtio_submit(struct virtio_dev *dev, const struct virtio_buf *bufs, int n)
{
    /* One chain at a time: it always starts at descriptor 0. */
    volatile struct desc *desc = (volatile struct desc *)dev->desc;
    for (int i = 0; i < n; i++) {
        uint16_t more = i < n - 1 ? D_NEXT : 0;
        desc[i] = (struct desc){(uint32_t)bufs[i].addr, bufs[i].len,
                                (uint16_t)(bufs[i].flags | more), (uint16_t)(i + 1)};
    }
    u16_at(dev->avail + 4)[dev->avail_idx % dev->qsize] = 0;
    barrier();
    *u16_at(dev->avail + 2) = ++dev->avail_idx;
    barrier();
    virtio_write(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

uint32_t virtio_wait(struct virtio_dev *dev)
{
    while (*u16_at(dev->used + 2) == dev->last_used) barrier();
    volatile uint32_t *elem = (volatile uint32_t *)(dev->used + 4 + 8 * (dev->last_used % dev->qsize));
    uint32_t len = elem[1];
    dev->last_used++;
    virtio_write(dev, VIRTIO_MMIO_INTERRUPT_ACK, virtio_read(dev, VIRTIO_MMIO_INTERRUPT_STATUS));
    return len;
}

uint32_t virtio_request(struct virtio_dev *dev, const struct virtio_buf *bufs, int n)
{
    virtio_submit(dev, bufs, n);
    return virtio_wait(dev);
}
