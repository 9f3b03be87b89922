/*
 * A bare-metal virtio-blk driver for -M microvm, on the runtime's virtio-mmio driver
 * (tests/guests/virtio_mmio.c, legacy or modern registers): finds the transports
 * holding block devices and reads, writes, flushes and identifies each disk. The
 * command line picks how:
 * "irq" sleeps until the PIC interrupts instead of polling the used ring (acpi=off:
 * 8 transports on ISA IRQ 5+i), "ioapic" until an I/O APIC's redirection entry
 * delivers through the local APIC (the default microvm: 24 transports on GSI 24+i
 * of the second I/O APIC; without that one, ioapic2=off, 8 on GSI 16+i of the first),
 * "indirect" puts each request in an indirect descriptor table, "event" negotiates
 * the event index (used_event / avail_event). Everything it learns goes to COM1;
 * main's return value is the exit code (0: success).
 */
#include "guest.h"
#include "virtio_mmio.h"

#define ISA_SLOTS 8
#define DISK_VECTOR_BASE 0x50
#define QSIZE 8

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
#define F_FLUSH (1u << 9)
#define F_DISCARD (1u << 13)
#define F_WRITE_ZEROES (1u << 14)
#define CLUSTER_SECTORS 128 /* a 64 KiB qcow2 cluster */

struct req_hdr { uint32_t type, ioprio; uint64_t sector; } __attribute__((packed));

struct disk {
    struct virtio_dev dev;
    int irq;
    struct req_hdr hdr;
    uint8_t status;
};

static uint8_t rings[VIRTIO_MMIO_SLOTS][VIRTIO_RING_BYTES] __attribute__((aligned(4096)));
static uint8_t buf[4096] __attribute__((aligned(16)));
static uint8_t cluster[CLUSTER_SECTORS * 512] __attribute__((aligned(16)));
static struct disk disks[VIRTIO_MMIO_SLOTS];
static int ndisks, use_irq, use_ioapic, use_indirect, use_event_idx, use_discard;

static void fail(struct disk *d, const char *what)
{
    printf("disk%d: FAIL %s\n", (int)(d - disks), what);
    exit(1);
}

/* --- interrupts: every disk's IRQ goes to one handler that acknowledges all of them ----- */

__attribute__((interrupt)) static void disk_interrupt(struct interrupt_frame *frame)
{
    (void)frame;
    for (int i = 0; i < ndisks; i++) virtio_interrupt(&disks[i].dev);
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

/* --- requests through the runtime's virtio-mmio driver ---------------------------------- */

static void init_disk(struct disk *d)
{
    uint32_t wanted = F_FLUSH | (use_indirect ? VIRTIO_F_INDIRECT_DESC : 0)
        | (use_event_idx ? VIRTIO_F_EVENT_IDX : 0) | (use_discard ? F_DISCARD | F_WRITE_ZEROES : 0);
    const char *failed = virtio_init(&d->dev, wanted, rings[d->dev.slot], QSIZE);
    if (failed) fail(d, failed);
    if (d->dev.driver_features != wanted) fail(d, "features offered");
    d->dev.sleep = use_irq;
}

static int request(struct disk *d, uint32_t type, uint32_t sector, void *data, uint32_t len)
{
    d->hdr = (struct req_hdr){type, 0, sector};
    d->status = 0xFF;
    int to_device = type == T_OUT || type == T_DISCARD || type == T_WRITE_ZEROES;
    struct virtio_buf bufs[3] = {{&d->hdr, sizeof(struct req_hdr), VIRTIO_BUF_READ}};
    int n = 1;
    if (len) bufs[n++] = (struct virtio_buf){data, len, to_device ? VIRTIO_BUF_READ : VIRTIO_BUF_WRITE};
    bufs[n++] = (struct virtio_buf){&d->status, 1, VIRTIO_BUF_WRITE};
    virtio_request(&d->dev, bufs, n);
    return *(volatile uint8_t *)&d->status;
}

static void fill(uint8_t *p, uint32_t n, uint8_t seed)
{
    for (uint32_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 7);
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
    uint32_t cap_lo = virtio_read(&d->dev, VIRTIO_MMIO_CONFIG);
    uint32_t cap_hi = virtio_read(&d->dev, VIRTIO_MMIO_CONFIG + 4);
    uint32_t geometry = virtio_read(&d->dev, VIRTIO_MMIO_CONFIG + 16);
    printf("disk%d: slot %d irq %d version %d features %08x capacity %u%s chs %u/%u/%u\n", n,
           d->dev.slot, d->irq, d->dev.version, (unsigned)d->dev.features, (unsigned)cap_lo,
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
    if ((d->dev.features & F_FLUSH) && request(d, T_FLUSH, 0, 0, 0)) fail(d, "flush");

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
           (unsigned)d->dev.kicks, (unsigned)d->dev.kicks_suppressed);
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic;
    const char *append = multiboot_append(mbi); /* e.g. "ioapic16" for "ioapic" */
    use_ioapic = str_contains(append, "ioapic");
    use_irq = use_ioapic || str_contains(append, "irq");
    use_indirect = str_contains(append, "indirect");
    use_event_idx = str_contains(append, "event");
    use_discard = str_contains(append, "discard");
    printf("virtio-blk guest: %s%s%s\n",
           use_ioapic ? "interrupts through the I/O APIC" : use_irq ? "interrupts" : "polling",
           use_indirect ? ", indirect descriptors" : "", use_event_idx ? ", event index" : "");

    /* Where microvm wires the transports (a real guest reads it from the ACPI tables). */
    int slots = ISA_SLOTS, first_irq = 5;
    if (use_ioapic) {
        mmio_write32(IOAPIC2_BASE, 1);   /* the version register, 0 if there is no chip */
        int second = mmio_read32(IOAPIC2_BASE + 0x10) != 0;
        slots = second ? VIRTIO_MMIO_SLOTS : ISA_SLOTS;
        first_irq = second ? 24 : 16;
    }
    for (int below = slots; virtio_find_below(&disks[ndisks].dev, VIRTIO_ID_BLOCK, below); ndisks++) {
        below = disks[ndisks].dev.slot;
        disks[ndisks].irq = first_irq + below;
    }
    if (!ndisks) {
        puts("no virtio-blk device\n");
        return 1;
    }
    if (use_ioapic) setup_ioapic();
    else if (use_irq) setup_interrupts();
    for (int i = 0; i < ndisks; i++) init_disk(&disks[i]);
    for (int i = 0; i < ndisks; i++) exercise(&disks[i], i);
    if (use_irq) {
        uint32_t interrupts = 0;
        for (int i = 0; i < ndisks; i++) interrupts += disks[i].dev.interrupts;
        printf("interrupts: %u\n", (unsigned)interrupts);
    }
    puts("done\n");
    return 0;
}
