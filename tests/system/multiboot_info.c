/*
 * Prints what a Multiboot v1 loader hands the kernel: the magic, the entry state
 * (segments, CR0, EFLAGS) and every field of the information block, including the
 * memory map, the command line (-append) and the boot loader name, with the
 * addresses where the loader put them. Two loaders that print the same are
 * indistinguishable to a Multiboot kernel.
 */
#include "guest.h"

static uint32_t read_cr0(void) { uint32_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static uint32_t read_eflags(void) { uint32_t v; __asm__ volatile("pushf; pop %0" : "=r"(v)); return v; }
static uint16_t read_seg(int which)
{
    uint16_t v = 0;
    switch (which) {
    case 0: __asm__ volatile("mov %%cs, %0" : "=r"(v)); break;
    case 1: __asm__ volatile("mov %%ds, %0" : "=r"(v)); break;
    case 2: __asm__ volatile("mov %%ss, %0" : "=r"(v)); break;
    case 3: __asm__ volatile("mov %%es, %0" : "=r"(v)); break;
    }
    return v;
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    printf("magic %08x info %p\n", magic, mbi);
    printf("cs %04x ds %04x ss %04x es %04x\n", read_seg(0), read_seg(1), read_seg(2), read_seg(3));
    printf("cr0 pe %u pg %u eflags.if %u\n", read_cr0() & 1, read_cr0() >> 31, (read_eflags() >> 9) & 1);
    printf("flags %08x\n", mbi->flags);
    if (mbi->flags & (1 << 0))
        printf("mem_lower %u KiB mem_upper %u KiB\n", mbi->mem_lower, mbi->mem_upper);
    if (mbi->flags & (1 << 1))
        printf("boot_device %08x\n", mbi->boot_device);
    if (mbi->flags & (1 << 2))
        printf("cmdline at %08x '%s'\n", mbi->cmdline, (const char *)mbi->cmdline);
    if (mbi->flags & (1 << 3)) {
        printf("mods %u at %08x\n", mbi->mods_count, mbi->mods_addr);
        const uint32_t *mod = (const uint32_t *)mbi->mods_addr;
        for (uint32_t i = 0; i < mbi->mods_count; i++, mod += 4) {
            const uint8_t *data = (const uint8_t *)mod[0];
            printf("  mod %08x-%08x string at %08x '%s' reserved %u first bytes %02x %02x %02x\n",
                   mod[0], mod[1], mod[2], (const char *)mod[2], mod[3], data[0], data[1], data[2]);
        }
    }
    if (mbi->flags & (1 << 6)) {
        printf("mmap %u bytes at %08x\n", mbi->mmap_length, mbi->mmap_addr);
        uint32_t at = mbi->mmap_addr, end = at + mbi->mmap_length;
        while (at < end) {
            const struct multiboot_mmap_entry *e = (const void *)at;
            printf("  size %u addr %016llx len %016llx type %u\n", e->size, e->addr, e->len, e->type);
            at += e->size + 4;
        }
    }
    if (mbi->flags & (1 << 9))
        printf("loader at %08x '%s'\n", mbi->boot_loader_name, (const char *)mbi->boot_loader_name);
    return magic == MULTIBOOT_BOOTLOADER_MAGIC ? 0 : 1;
}
