/* The virtio-mmio driver of the test guests (see virtio_mmio.h). */
#include "virtio_mmio.h"

#include "guest.h"

enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8 };
enum { D_NEXT = 1, D_INDIRECT = 4 };

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static volatile uint16_t *u16_at(volatile uint8_t *p) { return (volatile uint16_t *)p; }

int virtio_find_below(struct virtio_dev *dev, uint32_t device_id, int below)
{
    for (int slot = below - 1; slot >= 0; slot--) {
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

int virtio_find(struct virtio_dev *dev, uint32_t device_id)
{
    return virtio_find_below(dev, device_id, VIRTIO_MMIO_SLOTS);
}

const char *virtio_init(struct virtio_dev *dev, uint32_t features, uint8_t *ring, unsigned qsize)
{
    if (qsize > VIRTIO_QUEUE_MAX) return "queue size";
    virtio_write(dev, VIRTIO_MMIO_STATUS, 0);
    virtio_write(dev, VIRTIO_MMIO_STATUS, S_ACK);
    virtio_write(dev, VIRTIO_MMIO_STATUS, S_ACK | S_DRIVER);
    virtio_write(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    dev->features = virtio_read(dev, VIRTIO_MMIO_DEVICE_FEATURES);
    dev->driver_features = features & dev->features;
    uint32_t status = S_ACK | S_DRIVER;
    virtio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    virtio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES, dev->driver_features);
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
    dev->kicks = dev->kicks_suppressed = 0;
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

/* The chain in descriptors 0..n-1, or in the indirect table that descriptor 0 points to. */
static void write_chain(struct virtio_dev *dev, const struct virtio_buf *bufs, int n)
{
    int indirect = (dev->driver_features & VIRTIO_F_INDIRECT_DESC) != 0;
    volatile struct virtio_desc *chain = indirect ? dev->table : (volatile struct virtio_desc *)dev->desc;
    for (int i = 0; i < n; i++) {
        uint16_t more = i < n - 1 ? D_NEXT : 0;
        chain[i] = (struct virtio_desc){(uint32_t)bufs[i].addr, bufs[i].len,
                                        (uint16_t)(bufs[i].flags | more), (uint16_t)(i + 1)};
    }
    if (indirect)
        *(volatile struct virtio_desc *)dev->desc = (struct virtio_desc){
            (uint32_t)dev->table, (uint32_t)(n * sizeof(struct virtio_desc)), D_INDIRECT, 0};
}

void virtio_submit(struct virtio_dev *dev, const struct virtio_buf *bufs, int n)
{
    if (n < 1 || n > VIRTIO_CHAIN_MAX || (unsigned)n > dev->qsize) {
        printf("virtio: FAIL a chain of %d buffers\n", n);
        exit(1);
    }
    int event_idx = (dev->driver_features & VIRTIO_F_EVENT_IDX) != 0;
    write_chain(dev, bufs, n); /* one request at a time: it always starts at descriptor 0 */
    if (event_idx) *u16_at(dev->avail + 4 + 2 * dev->qsize) = dev->last_used; /* used_event */
    u16_at(dev->avail + 4)[dev->avail_idx % dev->qsize] = 0;
    barrier();
    uint16_t old = dev->avail_idx;
    *u16_at(dev->avail + 2) = ++dev->avail_idx;
    barrier();
    dev->interrupts_seen = dev->interrupts;
    /* With EVENT_IDX the device says (avail_event) when it wants to be kicked. */
    uint16_t event = *u16_at(dev->used + 4 + 8 * dev->qsize);
    if (event_idx && (uint16_t)(dev->avail_idx - event - 1) >= (uint16_t)(dev->avail_idx - old)) {
        dev->kicks_suppressed++;
        return;
    }
    virtio_write(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    dev->kicks++;
}

uint32_t virtio_wait(struct virtio_dev *dev)
{
    if (dev->sleep) {
        /* Every completion must also interrupt: sleep until both happened. */
        while (*u16_at(dev->used + 2) == dev->last_used || dev->interrupts == dev->interrupts_seen) {
            sti_hlt();
            cli();
        }
    } else {
        while (*u16_at(dev->used + 2) == dev->last_used) barrier();
        virtio_interrupt(dev);
    }
    volatile uint32_t *elem = (volatile uint32_t *)(dev->used + 4 + 8 * (dev->last_used % dev->qsize));
    dev->last_used++;
    return elem[1];
}

uint32_t virtio_request(struct virtio_dev *dev, const struct virtio_buf *bufs, int n)
{
    virtio_submit(dev, bufs, n);
    return virtio_wait(dev);
}

uint32_t virtio_interrupt(struct virtio_dev *dev)
{
    uint32_t isr = virtio_read(dev, VIRTIO_MMIO_INTERRUPT_STATUS);
    if (isr) {
        virtio_write(dev, VIRTIO_MMIO_INTERRUPT_ACK, isr);
        dev->interrupts++;
    }
    return isr;
}
