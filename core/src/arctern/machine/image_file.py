"""Read-only access to a ``-kernel`` (or firmware) file without reading it whole.

The file is memory-mapped: a loader looks at headers and copies the segments
it needs, so a file with large debug sections costs no memory, and a device
node (``-kernel /dev/zero``) is refused instead of read forever. Messages are
QEMU's.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from arctern.errors import MachineError


@contextmanager
def map_image_file(path: str) -> Iterator[bytes | mmap.mmap]:
    """Yield the file's bytes (an mmap, or b"" for an empty file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:
        raise MachineError(f"could not load kernel '{path}': Is a directory") from None
    except OSError as exc:
        raise MachineError(f"could not open kernel file '{path}': {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise MachineError(f"could not load kernel '{path}': Is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise MachineError(f"could not load kernel '{path}': not a regular file")
        if info.st_size == 0:
            yield b""
            return
        mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        try:
            yield mapped
        finally:
            try:
                mapped.close()
            except BufferError:  # a view still lives (in a traceback): unmapped when it goes
                pass
    finally:
        os.close(fd)
