"""Numbers of the virtio 1.x specification that devices and transports share."""

from __future__ import annotations

# Device status bits (virtio 1.x 2.1).
STATUS_ACKNOWLEDGE = 1
STATUS_DRIVER = 2
STATUS_DRIVER_OK = 4
STATUS_FEATURES_OK = 8
STATUS_NEEDS_RESET = 0x40
STATUS_FAILED = 0x80

# Interrupt status (ISR) bits.
ISR_QUEUE = 1
ISR_CONFIG = 2

# Transport feature bits (virtio 1.x 6, and the legacy ones of 0.9.5).
F_NOTIFY_ON_EMPTY = 24
F_ANY_LAYOUT = 27
F_RING_INDIRECT_DESC = 28
F_RING_EVENT_IDX = 29
F_BAD_FEATURE = 30
F_VERSION_1 = 32
F_RING_RESET = 40

#: Features only a legacy driver can see (QEMU's VIRTIO_LEGACY_FEATURES).
LEGACY_ONLY_FEATURES = (1 << F_NOTIFY_ON_EMPTY) | (1 << F_ANY_LAYOUT) | (1 << F_BAD_FEATURE)

# Device IDs (virtio 1.x 5).
DEVICE_ID_NET = 1
DEVICE_ID_BLOCK = 2
DEVICE_ID_CONSOLE = 3
DEVICE_ID_RNG = 4


def bit(n: int) -> int:
    """The feature mask of feature bit ``n``."""
    return 1 << n
