/*
 * block_resize as a guest sees it, on -M microvm,acpi=off (virtio-mmio slot i on ISA
 * IRQ 5+i): the virtio-blk disk's capacity, "waiting" (the test resizes the drive over
 * QMP then), the interrupt status the resize raised and the new capacity. Everything
 * goes to COM1; main's return value is the exit code (0: success).
 */
#include "guest.h"
#include "virtio_mmio.h"

#define VIRTIO_ID_BLOCK 2

static uint8_t ring[VIRTIO_RING_BYTES] __attribute__((aligned(4096)));
static struct virtio_dev disk;
static int irq;
static volatile uint32_t isr_seen;

__attribute__((interrupt)) static void disk_interrupt(struct interrupt_frame *frame)
{
    (void)frame;
    isr_seen |= virtio_interrupt(&disk);
    pic_eoi(irq);
}

static void print_capacity(void)
{
    uint32_t lo = virtio_read(&disk, VIRTIO_MMIO_CONFIG);
    uint32_t hi = virtio_read(&disk, VIRTIO_MMIO_CONFIG + 4);
    printf("capacity %u sectors%s\n", (unsigned)lo, hi ? " (+high word)" : "");
}

int main(void)
{
    if (!virtio_find(&disk, VIRTIO_ID_BLOCK)) {
        printf("FAIL no virtio-blk disk\n");
        return 1;
    }
    const char *failed = virtio_init(&disk, 0, ring, 8);
    if (failed) {
        printf("FAIL %s\n", failed);
        return 1;
    }
    irq = 5 + disk.slot;
    idt_set_gate((uint8_t)(0x20 + irq), disk_interrupt);
    pic_init(0x20, 0x28, (uint16_t)(1u << irq));
    print_capacity();
    printf("waiting\n");
    for (;;) {
        __asm__ volatile("cli");
        if (isr_seen) break;
        sti_hlt(); /* no interrupt lost between the check and the halt */
    }
    printf("interrupt status %u\n", (unsigned)isr_seen);
    print_capacity();
    return 0;
}
