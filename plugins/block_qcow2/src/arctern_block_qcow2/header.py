"""The qcow2 header and its extensions: parse with validation, serialize.

Parsing checks every field QEMU checks (and a few more, such as tables past
the end of the file) so that a hostile image gets one clear
:class:`ImageFormatError` before anything is allocated from its numbers.
Unknown header extensions are kept verbatim and written back.
"""

from __future__ import annotations

import struct
from typing import Any

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L

_V2 = struct.Struct(">4sIQIIQIIQQIIQ")  # 72 bytes: magic, then _V2_FIELDS
_V2_FIELDS = (
    "version",
    "backing_file_offset",
    "backing_file_size",
    "cluster_bits",
    "size",
    "crypt_method",
    "l1_size",
    "l1_table_offset",
    "refcount_table_offset",
    "refcount_table_clusters",
    "nb_snapshots",
    "snapshots_offset",
)
_V3_EXTRA = struct.Struct(">QQQII")  # 32 bytes: up to header_length
_EXT_HEAD = struct.Struct(">II")


class Header:
    """The header fields (defaults: a new v3 image), the extensions, the backing file name.

    A plain class rather than a dataclass: the generated methods of a 23-field
    dataclass cost more to build at import than the whole module otherwise.
    """

    version: int = 3
    backing_file_offset: int = 0
    backing_file_size: int = 0
    cluster_bits: int = 16
    size: int = 0
    crypt_method: int = 0
    l1_size: int = 0
    l1_table_offset: int = 0
    refcount_table_offset: int = 0
    refcount_table_clusters: int = 0
    nb_snapshots: int = 0
    snapshots_offset: int = 0
    incompatible_features: int = 0
    compatible_features: int = 0
    autoclear_features: int = 0
    refcount_order: int = 4
    header_length: int = L.V3_HEADER_LENGTH
    compression_type: int = L.COMPRESSION_ZLIB
    #: Bytes of header fields we do not know (between 112 and header_length), kept verbatim.
    extra_fields: bytes = b""
    backing_file: str | None = None
    backing_format: str | None = None
    #: (type, bit) -> name, from the image's feature-name table.
    feature_names: dict[tuple[int, int], str]
    #: Unknown header extensions, (magic, data), kept and written back as found.
    unknown_extensions: list[tuple[int, bytes]]

    def __init__(self, **fields: Any) -> None:
        self.feature_names = {}
        self.unknown_extensions = []
        for name, value in fields.items():
            if name not in Header.__annotations__:
                raise TypeError(f"Header has no field {name!r}")
            setattr(self, name, value)

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def refcount_bits(self) -> int:
        return 1 << self.refcount_order

    @property
    def dirty(self) -> bool:
        return bool(self.incompatible_features & L.INCOMPAT_DIRTY)

    @property
    def corrupt(self) -> bool:
        return bool(self.incompatible_features & L.INCOMPAT_CORRUPT)

    @property
    def lazy_refcounts(self) -> bool:
        return bool(self.compatible_features & L.COMPAT_LAZY_REFCOUNTS)

    def feature_name(self, kind: int, bit: int) -> str:
        known = {(t, b): n for t, b, n in L.FEATURE_NAMES}
        return self.feature_names.get((kind, bit)) or known.get((kind, bit)) or f"bit {bit}"

    # --- serialization ---------------------------------------------------

    def pack(self) -> bytes:
        """The header cluster's meaningful bytes: fields, extensions, backing file name.

        Extensions follow QEMU's order (backing format, feature table, unknown
        ones, end marker); the backing file name follows the end marker.
        """
        fields = self._pack_fields()
        tail = b""
        if self.backing_file is not None:
            tail = self.backing_file.encode()
        exts = []
        if self.backing_format:
            exts.append(_ext(L.EXT_BACKING_FORMAT, self.backing_format.encode()))
        rest = [_ext(magic, data) for magic, data in self.unknown_extensions]
        end = _ext(L.EXT_END, b"")
        fixed = len(fields) + sum(map(len, exts)) + sum(map(len, rest)) + len(end) + len(tail)
        if fixed > self.cluster_size:
            raise ImageFormatError("qcow2 header extensions do not fit in the first cluster")
        if self.version >= 3 and self.cluster_size >= L.MIN_FEATURE_TABLE_CLUSTER:
            exts.append(_ext(L.EXT_FEATURE_TABLE, _feature_table()))
        body = fields + b"".join(exts) + b"".join(rest) + end
        if self.backing_file is not None:
            self.backing_file_offset, self.backing_file_size = len(body), len(tail)
        else:
            self.backing_file_offset = self.backing_file_size = 0
        return self._pack_fields() + body[len(fields) :] + tail

    def _pack_fields(self) -> bytes:
        base = _V2.pack(L.MAGIC, *(getattr(self, name) for name in _V2_FIELDS))
        if self.version < 3:
            return base
        v3 = _V3_EXTRA.pack(
            self.incompatible_features,
            self.compatible_features,
            self.autoclear_features,
            self.refcount_order,
            self.header_length,
        )
        extra = bytes([self.compression_type]) + bytes(7) + self.extra_fields
        return (base + v3 + extra)[: self.header_length].ljust(self.header_length, b"\0")


def _ext(magic: int, data: bytes) -> bytes:
    padded = len(data) + (-len(data) % 8)
    return _EXT_HEAD.pack(magic, len(data)) + data.ljust(padded, b"\0")


def _feature_table() -> bytes:
    return b"".join(
        bytes([kind, bit]) + name.encode().ljust(L.FEATURE_NAME_LEN, b"\0")
        for kind, bit, name in L.FEATURE_NAMES
    )


# --- parsing ------------------------------------------------------------------


def parse_header(data: bytes, file_length: int, filename: str) -> Header:
    """Parse and validate the header from the first cluster ``data`` (at least 2 MiB or EOF)."""

    def bad(msg: str) -> ImageFormatError:
        return ImageFormatError(f"qcow2 image '{filename}': {msg}")

    if len(data) < L.V2_HEADER_LENGTH or data[:4] != L.MAGIC:
        raise bad("not a qcow2 image (bad magic or too short)")
    h = Header(**dict(zip(_V2_FIELDS, _V2.unpack_from(data)[1:], strict=True)))
    if h.version not in (2, 3):
        raise bad(f"unsupported qcow2 version {h.version}")
    if not L.MIN_CLUSTER_BITS <= h.cluster_bits <= L.MAX_CLUSTER_BITS:
        raise bad(f"unsupported cluster size 2^{h.cluster_bits} (must be 512 B .. 2 MiB)")
    cs = h.cluster_size
    if h.version == 2:
        h.header_length = L.V2_HEADER_LENGTH
    else:
        if len(data) < L.MIN_V3_HEADER_LENGTH:
            raise bad("truncated version 3 header")
        (
            h.incompatible_features,
            h.compatible_features,
            h.autoclear_features,
            h.refcount_order,
            h.header_length,
        ) = _V3_EXTRA.unpack_from(data, L.V2_HEADER_LENGTH)
        if h.header_length < L.MIN_V3_HEADER_LENGTH or h.header_length % 8:
            raise bad(f"invalid header length {h.header_length}")
        if h.header_length > cs or h.header_length > len(data):
            raise bad("header length exceeds the first cluster")
        if h.header_length > 104:
            h.compression_type = data[104]
        h.extra_fields = bytes(data[L.V3_HEADER_LENGTH : h.header_length])
    if h.refcount_order > L.MAX_REFCOUNT_ORDER:
        raise bad(f"invalid refcount order {h.refcount_order} (at most 6)")
    if h.crypt_method:
        raise bad("encrypted images are not supported")
    _parse_extensions(h, data, bad)
    _check_features(h, bad)
    _check_tables(h, file_length, bad)
    bf_off, bf_size = h.backing_file_offset, h.backing_file_size
    if bf_off:
        if bf_size > L.MAX_BACKING_NAME or bf_off + bf_size > min(cs, len(data)):
            raise bad("invalid backing file name offset or length")
        try:
            h.backing_file = bytes(data[bf_off : bf_off + bf_size]).decode()
        except UnicodeDecodeError:
            raise bad("backing file name is not valid UTF-8") from None
    return h


def _parse_extensions(h: Header, data: bytes, bad) -> None:
    end = h.backing_file_offset if h.backing_file_offset else h.cluster_size
    end = min(end, h.cluster_size, len(data))
    pos = h.header_length
    while pos + _EXT_HEAD.size <= end:
        magic, length = _EXT_HEAD.unpack_from(data, pos)
        pos += _EXT_HEAD.size
        if magic == L.EXT_END:
            return
        if length > end - pos:
            raise bad(f"header extension 0x{magic:08x} is longer than the header cluster")
        payload = bytes(data[pos : pos + length])
        pos += length + (-length % 8)
        if magic == L.EXT_BACKING_FORMAT:
            try:
                h.backing_format = payload.decode()
            except UnicodeDecodeError:
                raise bad("backing format name is not valid UTF-8") from None
        elif magic == L.EXT_FEATURE_TABLE:
            for off in range(0, length - 47, 48):
                name = payload[off + 2 : off + 48].split(b"\0", 1)[0]
                h.feature_names[(payload[off], payload[off + 1])] = name.decode(errors="replace")
        else:
            h.unknown_extensions.append((magic, payload))


def _check_features(h: Header, bad) -> None:
    unknown = h.incompatible_features & ~L.INCOMPAT_SUPPORTED
    if unknown:
        names = [
            h.feature_name(L.FEATURE_INCOMPATIBLE, bit) for bit in range(64) if unknown >> bit & 1
        ]
        raise bad(f"unsupported incompatible feature(s): {', '.join(names)}")
    has_type_bit = bool(h.incompatible_features & L.INCOMPAT_COMPRESSION)
    if has_type_bit != (h.compression_type != L.COMPRESSION_ZLIB):
        raise bad("compression type field and feature bit disagree")
    if h.compression_type not in L.COMPRESSION_NAMES:
        raise bad(f"unknown compression type {h.compression_type}")


def _check_tables(h: Header, file_length: int, bad) -> None:
    cs = h.cluster_size
    l2_entries = cs // 8
    needed_l1 = -(-h.size // (cs * l2_entries))
    if h.l1_size * 8 > L.MAX_L1_BYTES:
        raise bad(f"active L1 table too large ({h.l1_size} entries)")
    if h.l1_size < needed_l1:
        raise bad("L1 table is too small for the virtual size")
    _check_table(h, "L1 table", h.l1_table_offset, h.l1_size * 8, file_length, bad)
    rt_bytes = h.refcount_table_clusters * cs
    if rt_bytes > L.MAX_REFTABLE_BYTES:
        raise bad(f"refcount table too large ({h.refcount_table_clusters} clusters)")
    if h.refcount_table_clusters == 0:
        raise bad("image has no refcount table")
    _check_table(h, "refcount table", h.refcount_table_offset, rt_bytes, file_length, bad)
    if h.nb_snapshots > L.MAX_SNAPSHOTS:
        raise bad(f"too many snapshots ({h.nb_snapshots})")
    if h.nb_snapshots:
        _check_table(h, "snapshot table", h.snapshots_offset, 40 * h.nb_snapshots, file_length, bad)


def _check_table(h: Header, what: str, offset: int, length: int, file_length: int, bad) -> None:
    if offset % h.cluster_size:
        raise bad(f"{what} offset 0x{offset:x} is not cluster aligned")
    if length and offset == 0:
        raise bad(f"{what} overlaps the header")
    if offset + length > file_length:
        raise bad(f"{what} at 0x{offset:x} (+{length} bytes) lies past the end of the file")
