/*
 * A virtio-mmio driver for test guests (virtio 1.x 4.2, legacy and modern), one split
 * virtqueue per device, one request in flight. Link virtio_mmio.c with the guest:
 *
 *     guest_elf([GUEST_C, GUESTS / "virtio_mmio.c"])
 *
 *     struct virtio_dev dev;
 *     static uint8_t ring[VIRTIO_RING_BYTES] __attribute__((aligned(4096)));
 *     if (!virtio_find(&dev, VIRTIO_ID_RNG)) ...          // scans microvm's transports
 *     if (virtio_init(&dev, wanted_features, ring, 8)) ... // 0, or what failed
 *     struct virtio_buf bufs[] = {{data, 64, VIRTIO_BUF_WRITE}};
 *     uint32_t used_len = virtio_request(&dev, bufs, 1);   // kick, wait for the used ring
 *
 * What the driver negotiated decides how it goes: with VIRTIO_F_INDIRECT_DESC every
 * request is an indirect descriptor table, with VIRTIO_F_EVENT_IDX it asks for an
 * interrupt per completion (used_event) and kicks only when the device's avail_event
 * says so (dev.kicks and dev.kicks_suppressed count). It polls the used ring unless
 * dev.sleep is set: it then sleeps (sti; hlt) until the request is used and the
 * guest's interrupt handler has called virtio_interrupt(&dev) for it.
 */
#ifndef ARCTERN_GUEST_VIRTIO_MMIO_H
#define ARCTERN_GUEST_VIRTIO_MMIO_H

#include <stdint.h>

#define VIRTIO_MMIO_BASE 0xFEB00000u
#define VIRTIO_MMIO_SLOTS 24 /* the default microvm; reads past the last transport are 0 */
#define VIRTIO_RING_BYTES 8192 /* a legacy ring of up to 128 entries, 4096-aligned */
#define VIRTIO_QUEUE_MAX 128
#define VIRTIO_CHAIN_MAX 8 /* buffers in one request */

enum {
    VIRTIO_ID_BLOCK = 2, VIRTIO_ID_RNG = 4,
};
enum { VIRTIO_BUF_READ = 0, VIRTIO_BUF_WRITE = 2 }; /* device-readable / device-writable */
#define VIRTIO_F_INDIRECT_DESC (1u << 28)
#define VIRTIO_F_EVENT_IDX (1u << 29)

/* Registers (virtio 1.x 4.2.2; the legacy ones of 4.2.4). */
enum {
    VIRTIO_MMIO_MAGIC = 0x000, VIRTIO_MMIO_VERSION = 0x004, VIRTIO_MMIO_DEVICE_ID = 0x008,
    VIRTIO_MMIO_DEVICE_FEATURES = 0x010, VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014,
    VIRTIO_MMIO_DRIVER_FEATURES = 0x020, VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024,
    VIRTIO_MMIO_GUEST_PAGE_SIZE = 0x028, VIRTIO_MMIO_QUEUE_SEL = 0x030,
    VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034, VIRTIO_MMIO_QUEUE_NUM = 0x038,
    VIRTIO_MMIO_QUEUE_ALIGN = 0x03C, VIRTIO_MMIO_QUEUE_PFN = 0x040,
    VIRTIO_MMIO_QUEUE_READY = 0x044, VIRTIO_MMIO_QUEUE_NOTIFY = 0x050,
    VIRTIO_MMIO_INTERRUPT_STATUS = 0x060, VIRTIO_MMIO_INTERRUPT_ACK = 0x064,
    VIRTIO_MMIO_STATUS = 0x070, VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080,
    VIRTIO_MMIO_QUEUE_AVAIL_LOW = 0x090, VIRTIO_MMIO_QUEUE_USED_LOW = 0x0A0,
    VIRTIO_MMIO_CONFIG = 0x100,
};

struct virtio_buf {
    void *addr;
    uint32_t len;
    uint16_t flags; /* VIRTIO_BUF_READ or VIRTIO_BUF_WRITE */
};

struct virtio_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
} __attribute__((packed));

struct virtio_dev {
    uint32_t base;
    int slot, version;
    uint32_t features;        /* offered, low 32 bits */
    uint32_t driver_features; /* negotiated, low 32 bits */
    int sleep;                /* wait for the interrupt instead of polling (set by the guest) */
    unsigned qsize;
    uint16_t avail_idx, last_used;
    volatile uint8_t *desc, *avail, *used;
    uint32_t kicks, kicks_suppressed;
    volatile uint32_t interrupts; /* counted by virtio_interrupt() */
    uint32_t interrupts_seen;     /* at the last kick */
    volatile struct virtio_desc table[VIRTIO_CHAIN_MAX] __attribute__((aligned(16)));
};

/* The highest-numbered transport holding device_id (where microvm puts the first
 * -device); 1 if found. */
int virtio_find(struct virtio_dev *dev, uint32_t device_id);
/* The same below slot `below` (the next one of several: pass the previous one's slot). */
int virtio_find_below(struct virtio_dev *dev, uint32_t device_id, int below);
/* Reset, negotiate (the driver's features are features & offered, plus VERSION_1
 * on a modern transport), set up queue 0 with qsize entries in ring, DRIVER_OK.
 * Returns NULL on success, else what failed. */
const char *virtio_init(struct virtio_dev *dev, uint32_t features, uint8_t *ring, unsigned qsize);
/* Publish one chain of up to VIRTIO_CHAIN_MAX buffers (device-readable ones first),
 * kick, wait until the device uses it; returns the length the device wrote. */
uint32_t virtio_request(struct virtio_dev *dev, const struct virtio_buf *bufs, int n);
/* Publish one chain and kick without waiting; virtio_wait() collects it. */
void virtio_submit(struct virtio_dev *dev, const struct virtio_buf *bufs, int n);
uint32_t virtio_wait(struct virtio_dev *dev);
/* For the guest's interrupt handler: acknowledge the device's interrupt status and
 * count it; returns the status (0: the interrupt was not this device's). */
uint32_t virtio_interrupt(struct virtio_dev *dev);

static inline uint32_t virtio_read(const struct virtio_dev *dev, uint32_t reg)
{
    return *(volatile uint32_t *)(dev->base + reg);
}

static inline void virtio_write(const struct virtio_dev *dev, uint32_t reg, uint32_t value)
{
    *(volatile uint32_t *)(dev->base + reg) = value;
}

#endif
