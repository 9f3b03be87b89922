"""The virtio-rng guest (virtio_rng_guest.c on the runtime's virtio-mmio driver): its
sources and what it prints when every check passes, whichever entropy device it reads."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
SOURCES = [HERE / "virtio_rng_guest.c", HERE / "virtio_mmio.c"]
#: The lines after the first ("virtio-rng: slot ... features ... queue max ...").
ENTROPY_LINES = [
    "16-byte buffer: 16 bytes, not all zero",
    "two 32-byte buffers in one chain: 64 bytes, halves differ",
    "4096-byte buffer: 4096 bytes, over 200 distinct byte values",
    "a second 16 bytes differ from the first",
    "done",
]
