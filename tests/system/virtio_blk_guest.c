/*
 * A bare-metal virtio-blk driver for -M microvm: finds the virtio-mmio transports
 * holding block devices, drives legacy (Version 1) or modern (Version 2) registers,
 * and reads, writes, flushes and identifies each disk. The command line picks how:
 * "irq" sleeps until the PIC interrupts instead of polling the used ring (acpi=off:
 * 8 transports on ISA IRQ 5+i), "ioapic" until an I/O APIC's redirection entry
 * delivers through the local APIC (the default microvm: 24 transports on GSI 24+i
 * of the second I/O APIC; without that one, ioapic2=off, 8 on GSI 16+i of the first),
 * "indirect" puts each request in an indirect descriptor table, "event" negotiates
 * the event index (used_event / avail_event). Everything it learns goes to COM1;
 * main's return value is the exit code (0: success).
 */
#include "guest.h"

#define MMIO_BASE 0xFEB00000u
#define MMIO_SLOTS 24
#define ISA_SLOTS 8
#define DISK_VECTOR_BASE 0x50
#define QSIZE 8

enum {
    MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, DEVICE_FEATURES = 0x010,
    DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024,
    GUEST_PAGE_SIZE = 0x028, QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038,
    QUEUE_ALIGN = 0x03C, QUEUE_PFN = 0x040, QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050,
    INTERRUPT_STATUS = 0x060, INTERRUPT_ACK = 0x064, STATUS = 0x070,
    QUEUE_DESC_LOW = 0x080, QUEUE_DESC_HIGH = 0x084, QUEUE_AVAIL_LOW = 0x090,
    QUEUE_AVAIL_HIGH = 0x094, QUEUE_USED_LOW = 0x0A0, QUEUE_USED_HIGH = 0x0A4, CONFIG = 0x100,
};
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8 };
enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
enum { D_NEXT = 1, D_WRITE = 2, D_INDIRECT = 4 };
#define F_FLUSH (1u << 9)
#define F_DISCARD (1u << 13)
#define F_WRITE_ZEROES (1u << 14)
#define CLUSTER_SECTORS 128 /* a 64 KiB qcow2 cluster */
#define F_INDIRECT_DESC (1u << 28)
#define F_EVENT_IDX (1u << 29)

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; } __attribute__((packed));
struct avail { uint16_t flags, idx, ring[QSIZE], used_event; } __attribute__((packed));
struct used_elem { uint32_t id, len; } __attribute__((packed));
struct used { uint16_t flags, idx; struct used_elem ring[QSIZE]; uint16_t avail_event; }
    __attribute__((packed));
struct req_hdr { uint32_t type, ioprio; uint64_t sector; } __attribute__((packed));

struct disk {
    uint32_t base;
    int slot, version, irq;
    uint32_t features, kicks, kicks_suppressed;
    uint16_t avail_idx, last_used;
    volatile struct desc *desc;
    volatile struct avail *avail;
    volatile struct used *used;
    volatile struct req_hdr hdr;
    volatile uint8_t status;
    volatile struct desc table[3]; /* the indirect descriptor table of a request */
};

static uint8_t rings[MMIO_SLOTS][8192] __attribute__((aligned(4096)));
static uint8_t buf[4096] __attribute__((aligned(16)));
static uint8_t cluster[CLUSTER_SECTORS * 512] __attribute__((aligned(16)));
static struct disk disks[MMIO_SLOTS];
static int ndisks, use_irq, use_ioapic, use_indirect, use_event_idx, use_discard;
static volatile int irq_count;

static inline uint32_t rd(struct disk *d, uint32_t off) { return mmio_read32(d->base + off); }
static inline void wr(struct disk *d, uint32_t off, uint32_t v) { mmio_write32(d->base + off, v); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static void fail(struct disk *d, const char *what)
{
    printf("disk%d: FAIL %s\n", (int)(d - disks), what);
    exit(1);
}

/* --- interrupts: every disk's IRQ goes to one handler that acknowledges all of them ----- */

__attribute__((interrupt)) static void disk_interrupt(struct interrupt_frame *frame)
{
    (void)frame;
    for (int i = 0; i < ndisks; i++) {
        uint32_t isr = rd(&disks[i], INTERRUPT_STATUS);
        if (isr) {
            wr(&disks[i], INTERRUPT_ACK, isr);
            irq_count++;
        }
    }
    if (use_ioapic) lapic_eoi();
    else pic_eoi(8); /* both chips: the disks' IRQs are on the slave */
}

/* Each disk's GSI: edge-triggered, to APIC 0. */
static void setup_ioapic(void)
{
    lapic_enable();
    for (int i = 0; i < ndisks; i++) {
        uint8_t vector = (uint8_t)(DISK_VECTOR_BASE + i);
        idt_set_gate(vector, disk_interrupt);
        ioapic_route((unsigned)disks[i].irq, vector, 0);
    }
}

static void setup_interrupts(void)
{
    uint16_t enabled = 0;
    for (int i = 0; i < ndisks; i++) {
        idt_set_gate((uint8_t)(0x20 + disks[i].irq), disk_interrupt);
        enabled |= (uint16_t)(1u << disks[i].irq);
    }
    pic_init(0x20, 0x28, enabled);
}

/* --- the driver --------------------------------------------------------------------- */

static void init_disk(struct disk *d)
{
    uint8_t *mem = rings[d->slot];
    wr(d, STATUS, 0);
    wr(d, STATUS, S_ACK);
    wr(d, STATUS, S_ACK | S_DRIVER);
    wr(d, DEVICE_FEATURES_SEL, 0);
    d->features = rd(d, DEVICE_FEATURES);
    uint32_t status = S_ACK | S_DRIVER;
    uint32_t wanted = F_FLUSH | (use_indirect ? F_INDIRECT_DESC : 0) | (use_event_idx ? F_EVENT_IDX : 0)
        | (use_discard ? F_DISCARD | F_WRITE_ZEROES : 0);
    if ((d->features & wanted) != wanted) fail(d, "features offered");
    wr(d, DRIVER_FEATURES_SEL, 0);
    wr(d, DRIVER_FEATURES, wanted);
    if (d->version == 1) {
        wr(d, GUEST_PAGE_SIZE, 4096);
    } else {
        wr(d, DRIVER_FEATURES_SEL, 1);
        wr(d, DRIVER_FEATURES, 1); /* VIRTIO_F_VERSION_1 */
        status |= S_FEATURES_OK;
        wr(d, STATUS, status);
        if (!(rd(d, STATUS) & S_FEATURES_OK)) fail(d, "features");
    }
    wr(d, QUEUE_SEL, 0);
    if (rd(d, QUEUE_NUM_MAX) < QSIZE) fail(d, "queue size");
    wr(d, QUEUE_NUM, QSIZE);
    d->desc = (volatile struct desc *)mem;
    d->avail = (volatile struct avail *)(mem + QSIZE * sizeof(struct desc));
    d->used = (volatile struct used *)(mem + 4096);
    if (d->version == 1) {
        wr(d, QUEUE_ALIGN, 4096);
        wr(d, QUEUE_PFN, (uint32_t)mem >> 12);
    } else {
        wr(d, QUEUE_DESC_LOW, (uint32_t)d->desc); wr(d, QUEUE_DESC_HIGH, 0);
        wr(d, QUEUE_AVAIL_LOW, (uint32_t)d->avail); wr(d, QUEUE_AVAIL_HIGH, 0);
        wr(d, QUEUE_USED_LOW, (uint32_t)d->used); wr(d, QUEUE_USED_HIGH, 0);
        wr(d, QUEUE_READY, 1);
    }
    wr(d, STATUS, status | S_DRIVER_OK);
}

static int request(struct disk *d, uint32_t type, uint32_t sector, void *data, uint32_t len)
{
    d->hdr.type = type; d->hdr.ioprio = 0; d->hdr.sector = sector;
    d->status = 0xFF;
    volatile struct desc *chain = use_indirect ? d->table : d->desc;
    chain[0] = (struct desc){(uint32_t)&d->hdr, sizeof(struct req_hdr), D_NEXT, 1};
    int n = 1;
    if (len) {
        int to_device = type == T_OUT || type == T_DISCARD || type == T_WRITE_ZEROES;
        chain[1] = (struct desc){(uint32_t)data, len, D_NEXT | (to_device ? 0 : D_WRITE), 2};
        n = 2;
    }
    chain[n] = (struct desc){(uint32_t)&d->status, 1, D_WRITE, 0};
    if (use_indirect)
        d->desc[0] = (struct desc){(uint32_t)d->table, (n + 1) * sizeof(struct desc), D_INDIRECT, 0};
    if (use_event_idx) d->avail->used_event = d->last_used; /* interrupt on the next completion */
    d->avail->ring[d->avail_idx % QSIZE] = 0;
    barrier();
    uint16_t old = d->avail_idx;
    d->avail->idx = ++d->avail_idx;
    barrier();
    int seen = irq_count;
    /* With EVENT_IDX the device says (avail_event) when it wants to be kicked. */
    uint16_t event = d->used->avail_event;
    if (!use_event_idx || (uint16_t)(d->avail_idx - event - 1) < (uint16_t)(d->avail_idx - old)) {
        wr(d, QUEUE_NOTIFY, 0);
        d->kicks++;
    } else {
        d->kicks_suppressed++;
    }
    if (use_irq) {
        /* Every completion must also interrupt: sleep until both happened. */
        while (d->used->idx == d->last_used || irq_count == seen) {
            sti_hlt();
            cli();
        }
    } else {
        while (d->used->idx == d->last_used) barrier();
        wr(d, INTERRUPT_ACK, rd(d, INTERRUPT_STATUS));
    }
    d->last_used++;
    return d->status;
}

static void fill(uint8_t *p, uint32_t n, uint8_t seed)
{
    for (uint32_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 7);
}

static int all_zero(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Fill a cluster, then DISCARD it (or WRITE_ZEROES with UNMAP); report what reads back. */
static void unmap_cluster(struct disk *d, int n, uint32_t type, uint32_t sector, const char *what)
{
    fill(cluster, sizeof(cluster), (uint8_t)(0x70 + n));
    if (request(d, T_OUT, sector, cluster, sizeof(cluster))) fail(d, "write cluster");
    struct { uint64_t sector; uint32_t num_sectors, flags; } __attribute__((packed)) range = {
        sector, CLUSTER_SECTORS, type == T_WRITE_ZEROES ? 1u : 0u /* UNMAP */
    };
    int status = request(d, type, 0, &range, sizeof(range));
    if (request(d, T_IN, sector, cluster, sizeof(cluster))) fail(d, "read cluster");
    printf("disk%d: %s status %d, reads back %s\n", n, what, status,
           all_zero(cluster, sizeof(cluster)) ? "zeroes" : "the old data");
}

static void exercise(struct disk *d, int n)
{
    uint32_t cap_lo = rd(d, CONFIG), cap_hi = rd(d, CONFIG + 4);
    uint32_t geometry = rd(d, CONFIG + 16);
    printf("disk%d: slot %d irq %d version %d features %08x capacity %u%s chs %u/%u/%u\n", n,
           d->slot, d->irq, d->version, (unsigned)d->features, (unsigned)cap_lo,
           cap_hi ? "+hi" : "", (unsigned)(geometry & 0xFFFF), (unsigned)((geometry >> 16) & 0xFF),
           (unsigned)(geometry >> 24));

    if (request(d, T_GET_ID, 0, buf, 20)) fail(d, "get-id");
    buf[20] = 0;
    printf("disk%d: id '%s'\n", n, (char *)buf);

    if (request(d, T_IN, 0, buf, 512)) fail(d, "read sector 0");
    buf[32] = 0;
    printf("disk%d: sector 0 '%s'\n", n, (char *)buf);

    fill(buf, 4096, (uint8_t)(0x40 + n));
    if (request(d, T_OUT, 8, buf, 4096)) fail(d, "write");
    const char msg[] = "written by the guest";
    memset(buf, 0, 512);
    memcpy(buf, msg, sizeof(msg));
    buf[sizeof(msg)] = (uint8_t)('0' + n);
    if (request(d, T_OUT, cap_lo - 1, buf, 512)) fail(d, "write last sector");
    if (request(d, T_OUT, cap_lo, buf, 512) != 1) fail(d, "write past the end");
    if ((d->features & F_FLUSH) && request(d, T_FLUSH, 0, 0, 0)) fail(d, "flush");

    memset(buf, 0, 4096);
    if (request(d, T_IN, 8, buf, 4096)) fail(d, "read back");
    static uint8_t expect[4096];
    fill(expect, 4096, (uint8_t)(0x40 + n));
    if (memcmp(buf, expect, 4096)) fail(d, "verify");
    if (use_discard) {
        unmap_cluster(d, n, T_DISCARD, 1 * CLUSTER_SECTORS, "discard");
        unmap_cluster(d, n, T_WRITE_ZEROES, 2 * CLUSTER_SECTORS, "write-zeroes");
        if (request(d, T_FLUSH, 0, 0, 0)) fail(d, "flush after unmapping"); /* make it stable */
    }
    printf("disk%d: write, flush, read back ok; kicks %u, suppressed %u\n", n,
           (unsigned)d->kicks, (unsigned)d->kicks_suppressed);
}

static int has_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++)
        if (!memcmp(s, word, n)) return 1;
    return 0;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    const char *cmdline = (mbi->flags & 4) ? (const char *)mbi->cmdline : "";
    while (*cmdline && *cmdline != ' ') cmdline++; /* skip the kernel's path */
    use_ioapic = has_word(cmdline, "ioapic");
    use_irq = use_ioapic || has_word(cmdline, "irq");
    use_indirect = has_word(cmdline, "indirect");
    use_event_idx = has_word(cmdline, "event");
    use_discard = has_word(cmdline, "discard");
    printf("virtio-blk guest: %s%s%s\n",
           use_ioapic ? "interrupts through the I/O APIC" : use_irq ? "interrupts" : "polling",
           use_indirect ? ", indirect descriptors" : "", use_event_idx ? ", event index" : "");

    /* Where microvm wires the transports (a real guest reads it from the ACPI tables). */
    int slots = ISA_SLOTS, first_irq = 5;
    if (use_ioapic) {
        mmio_write32(IOAPIC2_BASE, 1);   /* the version register, 0 if there is no chip */
        int second = mmio_read32(IOAPIC2_BASE + 0x10) != 0;
        slots = second ? MMIO_SLOTS : ISA_SLOTS;
        first_irq = second ? 24 : 16;
    }
    for (int slot = slots - 1; slot >= 0; slot--) {
        struct disk *d = &disks[ndisks];
        d->base = MMIO_BASE + 0x200u * slot;
        if (rd(d, MAGIC) != 0x74726976 || rd(d, DEVICE_ID) != 2) continue;
        d->slot = slot;
        d->irq = first_irq + slot;
        d->version = (int)rd(d, VERSION);
        ndisks++;
    }
    if (!ndisks) {
        puts("no virtio-blk device\n");
        return 1;
    }
    if (use_ioapic) setup_ioapic();
    else if (use_irq) setup_interrupts();
    for (int i = 0; i < ndisks; i++) init_disk(&disks[i]);
    for (int i = 0; i < ndisks; i++) exercise(&disks[i], i);
    if (use_irq) printf("interrupts: %d\n", irq_count);
    puts("done\n");
    return 0;
}
