/*
 * The built-in guest of arctern-demo on -M microvm: it keeps its disk and RAM busy
 * while it is live-migrated, and checks at the end that nothing was lost.
 *
 * Each round writes one sector at the start of the next 64 KiB slot of the disk (on a
 * qcow2 image with 64 KiB clusters, each round of the first pass allocates a new
 * cluster; the slots wrap around at the end of the disk), reads back the sector of an
 * earlier round and checks it, and rewrites one page of a 4 MiB RAM area.
 *
 * It runs until a byte arrives on COM1 (the demo sends one once the guest runs on the
 * destination) or, with "rounds=N" on the command line (-append), for exactly N rounds
 * so that its output does not depend on timing. Then it reads every slot back (1 MiB
 * per request), checks every page of the area, prints
 *     verified R rounds: S disk sectors, P RAM pages
 * and powers the machine off through the ACPI GED (exit status 0; with acpi=off it
 * leaves through isa-debug-exit if present). A mismatch prints a line starting with
 * "FAIL" and exits with code 1 through isa-debug-exit (or halts without it).
 *
 * Driver: legacy virtio-mmio (QEMU 7.2's default), one queue of 4 descriptors,
 * polling the used ring with interrupts off, so it works with and without ACPI.
 * Rebuild with build.py next to this file (tests check the shipped ELF is current).
 */
#include "guest.h"

#define SLOT_SECTORS 128    /* 64 KiB */
#define MAX_SLOTS 16384     /* disks past 1 GiB: only the first GiB is used */
#define AREA_PAGES 1024     /* 4 MiB of RAM */
#define CHUNK_SLOTS 16      /* final check: 1 MiB per request */
#define QSIZE 4
#define PROGRESS_EVERY 100

#define MMIO_BASE 0xFEB00000u
#define MMIO_STRIDE 0x200u
#define MMIO_SLOTS 24       /* 8 with acpi=off; reads past the last transport give 0 */
#define GED_SLEEP_CTL 0xFEA00200u
#define GED_POWEROFF 0x34   /* SLP_EN | SLP_TYP 5 */
#define COM1_LSR (COM1 + 5)
#define LSR_DATA_READY 0x01

enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_GUEST_FEATURES = 0x020,
    R_GUEST_PAGE_SIZE = 0x028, R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034,
    R_QUEUE_NUM = 0x038, R_QUEUE_ALIGN = 0x03c, R_QUEUE_PFN = 0x040, R_QUEUE_NOTIFY = 0x050,
    R_INTERRUPT_STATUS = 0x060, R_INTERRUPT_ACK = 0x064, R_STATUS = 0x070,
    R_CONFIG = 0x100,   /* virtio-blk config: capacity (sectors, 64-bit) first */
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
static uint8_t buffer[CHUNK_SLOTS * SLOT_SECTORS * 512] __attribute__((aligned(4096)));
static uint32_t area[AREA_PAGES][1024] __attribute__((aligned(4096)));
static uint32_t page_round[AREA_PAGES];   /* round + 1 of the last rewrite, 0: never */
static uint32_t slot_round[MAX_SLOTS];    /* round + 1 of the last write, 0: never */
static uint32_t slots;

static inline uint32_t reg(uint32_t off) { return mmio_read32(dev + off); }
static inline void set_reg(uint32_t off, uint32_t v) { mmio_write32(dev + off, v); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    puts("FAIL: ");
    vprintf(fmt, ap);
    va_end(ap);
    putc('\n');
    exit(1);
}

static void __attribute__((noreturn)) power_off(void)
{
    *(volatile uint8_t *)GED_SLEEP_CTL = GED_POWEROFF;  /* a byte-wide register */
    exit(0);                                    /* no ACPI: isa-debug-exit, or halt */
}

static void find_disk(void)
{
    for (uint32_t slot = 0; slot < MMIO_SLOTS; slot++) {
        dev = MMIO_BASE + MMIO_STRIDE * slot;
        if (reg(R_MAGIC) == 0x74726976 && reg(R_VERSION) == 1 && reg(R_DEVICE_ID) == 2)
            return;
    }
    fail("no legacy virtio-blk device on virtio-mmio");
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
        fail("virtqueue too small: QueueNumMax %u", reg(R_QUEUE_NUM_MAX));
    set_reg(R_QUEUE_NUM, QSIZE);
    set_reg(R_QUEUE_ALIGN, 4096);
    set_reg(R_QUEUE_PFN, (uint32_t)(uintptr_t)queue_mem >> 12);
    set_reg(R_STATUS, 1 | 2 | 4);  /* DRIVER_OK */
    uint64_t capacity = reg(R_CONFIG) | (uint64_t)reg(R_CONFIG + 4) << 32;
    uint64_t fit = capacity / SLOT_SECTORS;
    slots = fit > MAX_SLOTS ? MAX_SLOTS : (uint32_t)fit;
    slots -= slots % CHUNK_SLOTS;
    if (slots == 0)
        fail("disk smaller than 1 MiB: %u sectors", (uint32_t)capacity);
}

/* One request: header, data (len bytes at buffer), status; waits for its completion. */
static void transfer(uint32_t type, uint32_t sector, uint32_t len)
{
    req.type = type;
    req.ioprio = 0;
    req.sector = sector;
    req_status = 0xff;
    descs[0] = (struct desc){(uintptr_t)&req, sizeof(req), VIRTQ_NEXT, 1};
    descs[1] = (struct desc){(uintptr_t)buffer, len,
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
        fail("disk %s error at sector %u", type == BLK_IN ? "read" : "write", sector);
}

static uint32_t word(uint32_t round, uint32_t i) { return round * 2654435761u ^ (i * 40503u); }

static void fill(uint32_t *dst, uint32_t round, uint32_t words)
{
    for (uint32_t i = 0; i < words; i++)
        dst[i] = word(round, i);
}

static int matches(const uint32_t *src, uint32_t round, uint32_t words)
{
    for (uint32_t i = 0; i < words; i++)
        if (src[i] != word(round, i))
            return 0;
    return 1;
}

static void write_slot(uint32_t round)
{
    uint32_t slot = round % slots;
    fill((uint32_t *)buffer, round, 128);
    transfer(BLK_OUT, slot * SLOT_SECTORS, 512);
    slot_round[slot] = round + 1;
}

static void check_slot(uint32_t slot)
{
    transfer(BLK_IN, slot * SLOT_SECTORS, 512);
    if (!matches((const uint32_t *)buffer, slot_round[slot] - 1, 128))
        fail("disk sector of slot %u read back wrong (round %u)", slot, slot_round[slot] - 1);
}

static void dirty_page(uint32_t round)
{
    uint32_t page = (round * 37) % AREA_PAGES;   /* 37 is odd: every page in turn */
    fill(area[page], round, 1024);
    page_round[page] = round + 1;
}

/* Every slot written so far, CHUNK_SLOTS per request; returns how many were checked. */
static uint32_t check_disk(void)
{
    uint32_t checked = 0;
    for (uint32_t first = 0; first < slots; first += CHUNK_SLOTS) {
        if (!slot_round[first])
            break;   /* slots are written in order: nothing past here */
        transfer(BLK_IN, first * SLOT_SECTORS, sizeof(buffer));
        for (uint32_t i = 0; i < CHUNK_SLOTS && slot_round[first + i]; i++, checked++) {
            const uint32_t *sector = (const uint32_t *)(buffer + i * SLOT_SECTORS * 512);
            if (!matches(sector, slot_round[first + i] - 1, 128))
                fail("disk sector of slot %u wrong in the final check", first + i);
        }
    }
    return checked;
}

static uint32_t check_area(void)
{
    uint32_t checked = 0;
    for (uint32_t page = 0; page < AREA_PAGES; page++, checked++)
        if (!matches(area[page], page_round[page] - 1, 1024))
            fail("RAM page %u wrong in the final check", page);
    return checked;
}

/* "rounds=N" anywhere on the Multiboot command line; 0 when absent. */
static uint32_t rounds_option(const struct multiboot_info *mbi)
{
    static const char key[] = "rounds=";
    const char *s = (mbi->flags & 4) ? (const char *)mbi->cmdline : "";
    for (; *s; s++) {
        if (memcmp(s, key, sizeof(key) - 1) != 0 || (s != (const char *)mbi->cmdline && s[-1] != ' '))
            continue;
        uint32_t n = 0;
        for (s += sizeof(key) - 1; *s >= '0' && *s <= '9'; s++)
            n = n * 10 + (uint32_t)(*s - '0');
        return n;
    }
    return 0;
}

static int stop_requested(void)
{
    if (!(inb(COM1_LSR) & LSR_DATA_READY))
        return 0;
    (void)inb(COM1);
    return 1;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        fail("not started by a Multiboot loader (EAX 0x%x)", magic);
    uint32_t limit = rounds_option(mbi);
    find_disk();
    init_disk();
    for (uint32_t round = 0; round < AREA_PAGES; round++)   /* all of the area holds data */
        dirty_page(round);
    if (limit)
        printf("migration demo guest: %u slots of 64 KiB, %u rounds\n", slots, limit);
    else
        printf("migration demo guest: %u slots of 64 KiB, until a key on COM1\n", slots);
    uint32_t round = 0;
    while (limit ? round < limit : !stop_requested()) {
        write_slot(round);
        check_slot((round / 2) % slots);
        dirty_page(round);
        round++;
        if (round % PROGRESS_EVERY == 0)
            printf("round %u: disk and RAM ok\n", round);
    }
    uint32_t sectors = check_disk();
    uint32_t pages = check_area();
    printf("verified %u rounds: %u disk sectors, %u RAM pages\n", round, sectors, pages);
    power_off();
}
