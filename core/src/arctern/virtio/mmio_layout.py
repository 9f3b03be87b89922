"""The virtio-mmio register layout (virtio 1.x 4.2.2, and 4.2.4 for the legacy registers).

Offsets in the 0x200-byte window of a transport, shared by transports and by
guest-side drivers (the test drivers of :mod:`arctern.testing.virtio`).
"""

#: What MagicValue reads: "virt" in little-endian.
MAGIC = 0x74726976

MAGIC_VALUE = 0x000
VERSION = 0x004
DEVICE_ID = 0x008
VENDOR_ID = 0x00C
DEVICE_FEATURES = 0x010
DEVICE_FEATURES_SEL = 0x014
DRIVER_FEATURES = 0x020
DRIVER_FEATURES_SEL = 0x024
GUEST_PAGE_SIZE = 0x028
QUEUE_SEL = 0x030
QUEUE_NUM_MAX = 0x034
QUEUE_NUM = 0x038
QUEUE_ALIGN = 0x03C
QUEUE_PFN = 0x040
QUEUE_READY = 0x044
QUEUE_NOTIFY = 0x050
INTERRUPT_STATUS = 0x060
INTERRUPT_ACK = 0x064
STATUS = 0x070
QUEUE_DESC_LOW = 0x080
QUEUE_DESC_HIGH = 0x084
QUEUE_AVAIL_LOW = 0x090
QUEUE_AVAIL_HIGH = 0x094
QUEUE_USED_LOW = 0x0A0
QUEUE_USED_HIGH = 0x0A4
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100
