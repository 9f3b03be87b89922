"""On-disk constants of qcow2 (QEMU docs/interop/qcow2.txt) and the limits we enforce.

The limits are QEMU's: an image that QEMU refuses to open is refused here
too, and no header field can make us allocate more than these bounds.
"""

from __future__ import annotations

MAGIC = b"QFI\xfb"

MIN_CLUSTER_BITS = 9  # 512 B
MAX_CLUSTER_BITS = 21  # 2 MiB (QEMU's implementation limit)
MAX_REFCOUNT_ORDER = 6  # 64-bit refcounts

V2_HEADER_LENGTH = 72
V3_HEADER_LENGTH = 112  # what QEMU writes: fields up to compression_type, padded to 8
MIN_V3_HEADER_LENGTH = 104

MAX_L1_BYTES = 32 << 20  # QEMU_MAX_L1_SIZE
MAX_REFTABLE_BYTES = 8 << 20  # QEMU_MAX_REFTABLE_SIZE
MAX_SNAPSHOTS = 65536
MAX_SNAPSHOT_TABLE_BYTES = 64 << 20
MAX_BACKING_NAME = 1023

# Incompatible feature bits.
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_SUPPORTED = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION
# Compatible feature bits.
COMPAT_LAZY_REFCOUNTS = 1 << 0

FEATURE_INCOMPATIBLE = 0
FEATURE_COMPATIBLE = 1
FEATURE_AUTOCLEAR = 2

#: The feature-name table QEMU 7.2 writes, (type, bit, name), in its order.
FEATURE_NAMES: tuple[tuple[int, int, str], ...] = (
    (FEATURE_INCOMPATIBLE, 0, "dirty bit"),
    (FEATURE_INCOMPATIBLE, 1, "corrupt bit"),
    (FEATURE_INCOMPATIBLE, 2, "external data file"),
    (FEATURE_INCOMPATIBLE, 3, "compression type"),
    (FEATURE_INCOMPATIBLE, 4, "extended L2 entries"),
    (FEATURE_COMPATIBLE, 0, "lazy refcounts"),
    (FEATURE_AUTOCLEAR, 0, "bitmaps"),
    (FEATURE_AUTOCLEAR, 1, "raw external data"),
)
FEATURE_NAME_LEN = 46
#: qemu-img 7.2 writes the feature-name table only into images with clusters this large.
MIN_FEATURE_TABLE_CLUSTER = 8192

# Header extension magics.
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875

AUTOCLEAR_BITMAPS = 1 << 0

COMPRESSION_ZLIB = 0
COMPRESSION_ZSTD = 1
COMPRESSION_NAMES = {COMPRESSION_ZLIB: "zlib", COMPRESSION_ZSTD: "zstd"}

# L1 / L2 entry bits.
OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1 << 0
L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
L1E_RESERVED_MASK = 0x7F000000000001FF
L2E_STD_RESERVED_MASK = 0x3F000000000001FE

SECTOR = 512
