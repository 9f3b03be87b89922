"""Arctern devices: 16550 UART, virtio-mmio, virtio-blk, i8259, i8254, isa-debug-exit."""
