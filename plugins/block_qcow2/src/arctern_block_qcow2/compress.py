"""Compressed clusters: descriptors, bounded decompression, compression.

Output is capped at one cluster whatever the stream claims, so a hostile
compressed cluster cannot make us allocate more than the cluster size.
Compression matches QEMU's: raw deflate with a 4 KiB window (wbits -12), or
one zstd frame.
"""

from __future__ import annotations

import io
import zlib

from arctern.errors import ImageFormatError
from arctern_block_qcow2 import layout as L


def compressed_extent(entry: int, cluster_bits: int) -> tuple[int, int]:
    """(host offset, byte length) of the compressed data an L2 entry describes."""
    x = 62 - (cluster_bits - 8)
    offset = entry & ((1 << x) - 1)
    sectors = ((entry >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1
    return offset, sectors * L.SECTOR - (offset & (L.SECTOR - 1))


def compressed_entry(host: int, length: int, cluster_bits: int) -> int:
    """The L2 entry of ``length`` compressed bytes at host offset ``host``."""
    x = 62 - (cluster_bits - 8)
    extra_sectors = ((host + length - 1) >> 9) - (host >> 9)
    return L.OFLAG_COMPRESSED | (extra_sectors << x) | host


def compress_cluster(data: bytes | memoryview, compression_type: int) -> bytes:
    if compression_type == L.COMPRESSION_ZSTD:
        import zstandard  # imported when a zstd image needs it: it costs every start

        return zstandard.ZstdCompressor().compress(data)
    packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 9)
    return packer.compress(data) + packer.flush()


def decompress_cluster(data: bytes, cluster_size: int, compression_type: int, where: str) -> bytes:
    """Inflate one cluster; raise ImageFormatError unless exactly a cluster comes out."""
    try:
        if compression_type == L.COMPRESSION_ZSTD:
            out = _zstd_decompress(data, cluster_size)
        else:
            out = zlib.decompressobj(-12).decompress(data, cluster_size)
    except (zlib.error, ValueError) as exc:
        raise ImageFormatError(f"{where}: bad compressed cluster ({exc})") from None
    if len(out) != cluster_size:
        raise ImageFormatError(f"{where}: compressed cluster decompresses to {len(out)} bytes")
    return out


def _zstd_decompress(data: bytes, cluster_size: int) -> bytes:
    """Up to ``cluster_size`` bytes out of zstd frames (QEMU may write several)."""
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    try:
        while len(out) < cluster_size:
            piece = reader.read(cluster_size - len(out))
            if not piece:
                break
            out += piece
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from None
    return bytes(out)
