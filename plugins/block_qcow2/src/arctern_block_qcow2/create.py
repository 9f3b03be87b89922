"""Image creation with qemu-img's defaults and option checks.

Like QEMU, creation writes an empty image (header, one-cluster refcount table
at cluster 1, first refcount block at cluster 2, no L1 table) and then grows
it to the requested size through the driver itself, which places the L1
table at cluster 3 and preallocates if asked. The file is not padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arctern.errors import BlockError, UsageError
from arctern_block_qcow2 import layout as L
from arctern_block_qcow2.header import Header
from arctern_block_qcow2.options import parse_bool, parse_size
from arctern_block_qcow2.refcount import RefblockFormat
from arctern_block_qcow2.tables import entry_bytes

_COMPAT = {"0.10": 2, "v2": 2, "1.1": 3, "v3": 3}
_KNOWN = {
    "compat",
    "backing_file",
    "backing_fmt",
    "cluster_size",
    "preallocation",
    "lazy_refcounts",
    "refcount_bits",
    "compression_type",
    "extended_l2",
    "size",
}


@dataclass
class CreateSettings:
    version: int = 3
    cluster_size: int = 65536
    refcount_bits: int = 16
    lazy_refcounts: bool = False
    preallocation: str = "off"
    compression_type: int = L.COMPRESSION_ZLIB
    backing_file: str | None = None
    backing_fmt: str | None = None


def parse_create_options(options: dict[str, Any]) -> CreateSettings:
    """Validate ``-o`` options with qemu-img's rules and messages."""
    opts = {k.replace("-", "_"): v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        raise UsageError(f"Invalid parameter '{unknown[0]}' for qcow2 image creation")
    if parse_bool("extended_l2", opts.get("extended_l2", "off")):
        raise UsageError("extended_l2=on is not supported by Arctern's qcow2 driver")
    st = CreateSettings()
    compat = str(opts.get("compat", "1.1"))
    if compat not in _COMPAT:
        raise UsageError(f"Invalid compatibility level: '{compat}'")
    st.version = _COMPAT[compat]
    st.cluster_size = parse_size("cluster_size", opts.get("cluster_size", 65536))
    cs = st.cluster_size
    if cs & (cs - 1) or not 1 << L.MIN_CLUSTER_BITS <= cs <= 1 << L.MAX_CLUSTER_BITS:
        raise UsageError("Cluster size must be a power of two between 512 and 2048k")
    st.refcount_bits = int(opts.get("refcount_bits", 16))
    rb = st.refcount_bits
    if rb < 1 or rb > 64 or rb & (rb - 1):
        raise UsageError("Refcount width must be a power of two and may not exceed 64 bits")
    st.lazy_refcounts = parse_bool("lazy_refcounts", opts.get("lazy_refcounts", "off"))
    if st.version < 3 and rb != 16:
        raise UsageError(
            "Different refcount widths than 16 bits require compatibility "
            "level 1.1 or above (use version=v3 or greater)"
        )
    if st.version < 3 and st.lazy_refcounts:
        raise UsageError(
            "Lazy refcounts only supported with compatibility level 1.1 and "
            "above (use version=v3 or greater)"
        )
    st.preallocation = str(opts.get("preallocation", "off"))
    if st.preallocation not in ("off", "metadata", "falloc", "full"):
        raise UsageError(f"Invalid preallocation mode: '{st.preallocation}'")
    ctype = str(opts.get("compression_type", "zlib"))
    names = {v: k for k, v in L.COMPRESSION_NAMES.items()}
    if ctype not in names:
        raise UsageError(f"Invalid compression type '{ctype}' (use zlib or zstd)")
    st.compression_type = names[ctype]
    if st.version < 3 and st.compression_type != L.COMPRESSION_ZLIB:
        raise UsageError(
            "Compression type other than zlib requires compatibility level "
            "1.1 or above (use version=v3 or greater)"
        )
    st.backing_file = opts.get("backing_file")
    st.backing_fmt = opts.get("backing_fmt")
    if st.backing_file and not st.backing_fmt:
        raise UsageError("Backing file specified without backing format")
    if st.backing_fmt and not st.backing_file:
        raise UsageError("Backing format cannot be used without backing file")
    if st.backing_file and len(st.backing_file.encode()) > L.MAX_BACKING_NAME:
        raise UsageError("Backing file name too long")
    if st.backing_file and st.preallocation != "off":
        raise UsageError(
            "Backing file and preallocation can only be used at the same time if extended_l2 is on"
        )
    return st


def initial_header(st: CreateSettings) -> Header:
    cs = st.cluster_size
    h = Header(
        version=st.version,
        cluster_bits=cs.bit_length() - 1,
        size=0,
        refcount_table_offset=cs,
        refcount_table_clusters=1,
        refcount_order=st.refcount_bits.bit_length() - 1,
        header_length=L.V3_HEADER_LENGTH if st.version >= 3 else L.V2_HEADER_LENGTH,
        compression_type=st.compression_type,
        backing_file=st.backing_file,
        backing_format=st.backing_fmt,
    )
    if st.lazy_refcounts:
        h.compatible_features |= L.COMPAT_LAZY_REFCOUNTS
    if st.compression_type != L.COMPRESSION_ZLIB:
        h.incompatible_features |= L.INCOMPAT_COMPRESSION
    return h


def create_image(driver_cls, file, size: int, options: dict[str, Any]) -> None:
    """Write a new qcow2 image of ``size`` bytes into the empty protocol node ``file``."""
    st = parse_create_options(options)
    if size < 0:
        raise UsageError("Image size must not be negative")
    size = -(-size // L.SECTOR) * L.SECTOR
    cs = st.cluster_size
    header = initial_header(st)
    fmt = RefblockFormat(header.refcount_order, cs)
    refblock = bytearray(cs)
    for cluster in range(3):
        fmt.set(refblock, cluster, 1)
    first = header.pack().ljust(cs, b"\0")
    reftable = entry_bytes(2 * cs).ljust(cs, b"\0")
    file.pwrite(0, first + reftable + bytes(refblock))
    file.flush()
    node = _CreationNode(file=file, filename=getattr(file, "filename", "<new image>"))
    driver = driver_cls(node)
    driver.open({"lazy-refcounts": "off"})
    try:
        driver.truncate(size, preallocation=st.preallocation)
        driver.flush()
    except BlockError:
        driver.close()
        raise
    driver.close()


@dataclass
class _CreationNode:
    """The minimal node the driver needs while it formats a fresh file (no backing yet)."""

    file: Any
    filename: str
    backing: Any = None
    read_only: bool = False
    active: bool = True
    options: dict[str, Any] = field(default_factory=dict)
