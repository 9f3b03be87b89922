/*
 * A guest that keeps its disk and RAM busy while it is migrated.
 *
 * Each round writes a sector 64 KiB past the previous one (on a qcow2 image
 * with 64 KiB clusters every round allocates a new cluster), reads back the
 * sector of an earlier round and checks it, and rewrites one page of a
 * 4 MiB RAM area. At the end it checks every sector and page it wrote and
 * exits 0 (status 1) if all verified. The output is the same wherever the
 * guest ran, so a migrated run must print exactly what an unmigrated one does.
 *
 * Driver: legacy virtio-mmio (QEMU 7.2's default), one queue, polling the used
 * ring with interrupts off; on -M microvm,acpi=off the transports sit at
 * 0xfeb00000 + 0x200 * slot.
 */
#include "guest.h"

#ifndef ROUNDS
#define ROUNDS 600
#endif
#define STRIDE_SECTORS 128 /* 64 KiB */
#define RAM_PAGES 1024     /* 4 MiB */
#define QSIZE 16

#define MMIO_BASE 0xFEB00000u
#define MMIO_SLOTS 8
enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_GUEST_FEATURES = 0x020,
    R_GUEST_PAGE_SIZE = 0x028, R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034,
    R_QUEUE_NUM = 0x038, R_QUEUE_ALIGN = 0x03c, R_QUEUE_PFN = 0x040, R_QUEUE_NOTIFY = 0x050,
    R_INTERRUPT_STATUS = 0x060, R_INTERRUPT_ACK = 0x064, R_STATUS = 0x070,
};
enum { VIRTQ_NEXT = 1, VIRTQ_WRITE = 2 };
enum { BLK_IN = 0, BLK_OUT = 1 };

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; } __attribute__((packed));
struct avail { uint16_t flags, idx, ring[QSIZE]; } __attribute__((packed));
struct used { uint16_t flags, idx; struct { uint32_t id, len; } ring[QSIZE]; } __attribute__((packed));
struct blk_req { uint32_t type, ioprio; uint64_t sector; } __attribute__((packed));

/* Legacy layout: descriptors and the available ring, the used ring on the next page. */
static uint8_t queue_mem[2 * 4096] __attribute__((aligned(4096)));
static struct desc *const descs = (struct desc *)queue_mem;
static struct avail *const avail = (struct avail *)(queue_mem + QSIZE * sizeof(struct desc));
static volatile struct used *const used = (volatile struct used *)(queue_mem + 4096);

static uintptr_t dev;
static uint16_t next_avail, seen_used;
static struct blk_req req;
static volatile uint8_t req_status;
static uint8_t sector[512] __attribute__((aligned(16)));
static uint32_t area[RAM_PAGES][1024] __attribute__((aligned(4096)));
static uint32_t last_round[RAM_PAGES];

static inline uint32_t reg(uint32_t off) { return mmio_read32(dev + off); }
static inline void set_reg(uint32_t off, uint32_t v) { mmio_write32(dev + off, v); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static void __attribute__((noreturn)) fail(const char *what, int round)
{
    printf("FAIL %s (round %d)\n", what, round);
    exit(1);
}

static void find_disk(void)
{
    for (int slot = 0; slot < MMIO_SLOTS; slot++) {
        dev = MMIO_BASE + 0x200u * slot;
        if (reg(R_MAGIC) == 0x74726976 && reg(R_VERSION) == 1 && reg(R_DEVICE_ID) == 2)
            return;
    }
    fail("no legacy virtio-blk device", -1);
}

static void init_disk(void)
{
    set_reg(R_STATUS, 0);
    set_reg(R_STATUS, 1);          /* ACKNOWLEDGE */
    set_reg(R_STATUS, 1 | 2);      /* DRIVER */
    set_reg(R_GUEST_FEATURES, 0);  /* none needed */
    set_reg(R_GUEST_PAGE_SIZE, 4096);
    set_reg(R_QUEUE_SEL, 0);
    if (reg(R_QUEUE_NUM_MAX) < QSIZE)
        fail("queue too small", -1);
    set_reg(R_QUEUE_NUM, QSIZE);
    set_reg(R_QUEUE_ALIGN, 4096);
    set_reg(R_QUEUE_PFN, (uint32_t)(uintptr_t)queue_mem >> 12);
    set_reg(R_STATUS, 1 | 2 | 4);  /* DRIVER_OK */
}

static void transfer(uint32_t type, uint32_t lba, int round)
{
    req.type = type;
    req.ioprio = 0;
    req.sector = lba;
    req_status = 0xff;
    descs[0] = (struct desc){(uintptr_t)&req, sizeof(req), VIRTQ_NEXT, 1};
    descs[1] = (struct desc){(uintptr_t)sector, sizeof(sector),
                             VIRTQ_NEXT | (type == BLK_IN ? VIRTQ_WRITE : 0), 2};
    descs[2] = (struct desc){(uintptr_t)&req_status, 1, VIRTQ_WRITE, 0};
    avail->ring[next_avail % QSIZE] = 0;
    barrier();
    avail->idx = ++next_avail;
    barrier();
    set_reg(R_QUEUE_NOTIFY, 0);
    while (used->idx == seen_used)
        barrier();
    seen_used++;
    set_reg(R_INTERRUPT_ACK, reg(R_INTERRUPT_STATUS));
    if (req_status != 0)
        fail(type == BLK_IN ? "read error" : "write error", round);
}

static uint8_t pattern(int round, int i) { return (uint8_t)((round * 2654435761u + i * 40503u) >> 13); }

static void write_round(int round)
{
    for (int i = 0; i < 512; i++)
        sector[i] = pattern(round, i);
    transfer(BLK_OUT, (uint32_t)round * STRIDE_SECTORS, round);
}

static int check_round(int round, int now)
{
    transfer(BLK_IN, (uint32_t)round * STRIDE_SECTORS, now);
    for (int i = 0; i < 512; i++)
        if (sector[i] != pattern(round, i))
            return 0;
    return 1;
}

/* Rewrite page round * 37 mod RAM_PAGES (37 is odd: RAM_PAGES rounds cover every page). */
static void dirty_page(int round)
{
    int page = (round * 37) % RAM_PAGES;
    for (int w = 0; w < 1024; w++)
        area[page][w] = (uint32_t)round * 2654435761u ^ (uint32_t)w;
    last_round[page] = (uint32_t)round + 1;
}

static int check_pages(void)
{
    for (int page = 0; page < RAM_PAGES; page++) {
        if (!last_round[page])
            continue;
        uint32_t round = last_round[page] - 1;
        for (int w = 0; w < 1024; w++)
            if (area[page][w] != (round * 2654435761u ^ (uint32_t)w))
                return page;
    }
    return -1;
}

int main(void)
{
    find_disk();
    init_disk();
    printf("disk writer: %d rounds\n", ROUNDS);
    for (int round = 0; round < RAM_PAGES; round++) /* all of the area holds data */
        dirty_page(round);
    for (int round = 0; round < ROUNDS; round++) {
        write_round(round);
        if (round > 0 && !check_round(round / 2, round))
            fail("read back an earlier round", round);
        dirty_page(round);
        if ((round + 1) % 50 == 0)
            printf("round %d ok\n", round + 1);
    }
    for (int round = 0; round < ROUNDS; round++)
        if (!check_round(round, ROUNDS))
            fail("final check of a sector", round);
    int bad = check_pages();
    if (bad >= 0)
        fail("final check of RAM page", bad);
    printf("verified %d sectors and the RAM area\n", ROUNDS);
    return 0;
}
