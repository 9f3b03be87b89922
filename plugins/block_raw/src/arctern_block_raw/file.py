"""The "file" protocol driver: an image in a host file (or block device).

Data moves with os.preadv/os.pwritev straight between the file and the
caller's memoryview. cache=none and directsync open the file O_DIRECT and
declare the device's request alignment, so the layer hands over aligned
requests in aligned memory only. Locks are QEMU's OFD lock bytes
(:mod:`arctern.block.locking`), taken as the layer sets the node's
permissions.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import stat
import weakref
from typing import TYPE_CHECKING, Any

from arctern.block import permissions
from arctern.block.driver import (
    STATUS_ALLOCATED,
    STATUS_DATA,
    STATUS_OFFSET_VALID,
    STATUS_ZERO,
    BlockDriver,
    BlockStatus,
)
from arctern.block.locking import ImageLock, ofd_supported
from arctern.errors import BlockError, UsageError
from arctern_block_raw.fallocate import UNSUPPORTED, punch_hole, zero_range

if TYPE_CHECKING:
    from arctern.block.node import BlockNode

log = logging.getLogger(__name__)

LOCKING_MODES = ("auto", "on", "off")
OPEN_OPTIONS = ("create", "locking")
ZERO_CHUNK = 1 << 20
DIRECT_ALIGNMENTS = (512, 1024, 2048, 4096)
#: copy_file_range(2) errors meaning "not between these files": copy through a buffer.
COPY_UNSUPPORTED = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}
)


def _probe_direct_alignment(fd: int) -> int:
    """The smallest request size an O_DIRECT read accepts (QEMU probes the same way)."""
    area = mmap.mmap(-1, max(DIRECT_ALIGNMENTS))
    try:
        with memoryview(area) as view:
            for align in DIRECT_ALIGNMENTS:
                try:
                    os.preadv(fd, [view[:align]], 0)
                except OSError as exc:
                    if exc.errno == errno.EINVAL:
                        continue
                    raise
                return align
    finally:
        area.close()
    return max(DIRECT_ALIGNMENTS)


class FileDriver(BlockDriver):
    name = "file"
    protocol = True

    fd = -1
    lock: ImageLock | None = None
    #: The file size, cached as QEMU caches a node's length: this node is the only one
    #: that may resize the file (others cannot share the resize permission) until
    #: invalidate_cache, which forgets it.
    _size: int | None = None

    # --- opening -------------------------------------------------------------

    def open(self, options: dict[str, Any]) -> None:
        node = self.node
        unknown = sorted(set(options) - set(OPEN_OPTIONS))
        if unknown:
            raise UsageError(f"Invalid parameter 'file.{unknown[0]}' for '{node.filename}'")
        locking = options.get("locking", "auto")
        if locking not in LOCKING_MODES:
            raise UsageError(f"Invalid locking mode '{locking}' (allowed: auto, on, off)")
        flags = os.O_CLOEXEC | (os.O_RDONLY if node.read_only else os.O_RDWR)
        if options.get("create"):
            flags |= os.O_CREAT
        if node.cache.direct:
            flags |= os.O_DIRECT
        if "\0" in node.filename:
            raise BlockError(f"Could not open {node.filename!r}: the name contains a NUL byte")
        # O_NONBLOCK: a FIFO named by a hostile image as its backing file must not hang us.
        self.fd = os.open(node.filename, flags | os.O_NONBLOCK, 0o644)
        self._closer = weakref.finalize(self, os.close, self.fd)
        try:
            st = os.fstat(self.fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                raise BlockError(f"'file' driver requires '{node.filename}' to be a regular file")
            os.set_blocking(self.fd, True)
            self.regular = stat.S_ISREG(st.st_mode)
            if node.cache.direct:
                self.request_alignment = _probe_direct_alignment(self.fd)
            self.lock = self._make_lock(locking)
        except BaseException:
            self.close()
            raise

    def _make_lock(self, mode: str) -> ImageLock | None:
        if mode == "off":
            return None
        if ofd_supported(self.fd):
            return ImageLock(self.fd, self.node.filename)
        if mode == "on":
            raise BlockError(f"Could not lock '{self.node.filename}': OFD locks are not supported")
        log.warning("OFD locks are not supported on '%s': image not locked", self.node.filename)
        return None

    def close(self) -> None:
        if self.fd >= 0:
            self._closer()  # closing the descriptor releases its OFD locks
            self.fd = -1

    def set_permissions(self, perm: int, shared: int) -> None:
        if self.lock is None:
            return
        if perm == permissions.NONE and shared == permissions.ALL:
            self.lock.release()
        else:
            self.lock.apply(perm, shared)

    # --- I/O -----------------------------------------------------------------

    def _error(self, what: str, exc: OSError) -> BlockError:
        return BlockError(f"Could not {what} '{self.node.filename}': {exc.strerror or exc}")

    def getlength(self) -> int:
        if self._size is None:
            try:
                if self.regular:
                    self._size = os.fstat(self.fd).st_size
                else:
                    self._size = os.lseek(self.fd, 0, os.SEEK_END)
            except OSError as exc:
                raise self._error("get the size of", exc) from exc
        return self._size

    def pread(self, offset: int, buf: memoryview) -> None:
        """Read ``buf`` at ``offset``; the part past the end of the file reads as zeroes."""
        wanted = len(buf)
        done = 0
        try:
            while done < wanted:
                got = os.preadv(self.fd, [buf[done:]], offset + done)
                done += got
                if done < wanted and (got == 0 or offset + done >= self.getlength()):
                    buf[done:] = bytes(wanted - done)
                    return
        except OSError as exc:
            raise self._error(f"read {wanted} bytes at offset {offset} of", exc) from exc

    def pwrite(self, offset: int, data: memoryview) -> None:
        done = 0
        try:
            while done < len(data):
                done += os.pwritev(self.fd, [data[done:]], offset + done)
        except OSError as exc:
            self._size = None
            raise self._error(f"write {len(data)} bytes at offset {offset} of", exc) from exc
        if self._size is not None and offset + done > self._size:
            self._size = offset + done

    def copy_range_from(self, offset: int, length: int, dst: BlockNode, dst_offset: int) -> None:
        dst.copy_range_to(self.node, offset, dst_offset, length)

    def copy_range_to(self, src: BlockNode, src_offset: int, offset: int, length: int) -> None:
        """copy_file_range(2) from another file node: the kernel copies (or shares) the
        blocks. What it cannot do (other file systems, O_DIRECT, a source shorter than
        the range) goes through a buffer."""
        done = 0
        if isinstance(src.driver, FileDriver) and not (src.cache.direct or self.node.cache.direct):
            done = self._copy_file_range(src.driver.fd, src_offset, offset, length)
        if done < length:
            super().copy_range_to(src, src_offset + done, offset + done, length - done)

    def _copy_file_range(self, src_fd: int, src_offset: int, offset: int, length: int) -> int:
        """Bytes copied by copy_file_range(2) until it is done, stops or is unsupported."""
        done = 0
        try:
            while done < length:
                n = os.copy_file_range(
                    src_fd, self.fd, length - done, src_offset + done, offset + done
                )
                if n == 0:
                    break  # the end of the source file: the rest reads as zeroes
                done += n
        except OSError as exc:
            if exc.errno not in COPY_UNSUPPORTED:
                self._size = None
                raise self._error(f"copy {length} bytes to offset {offset} of", exc) from exc
            log.debug("copy_file_range not usable for '%s': %s", self.node.filename, exc)
        if self._size is not None and offset + done > self._size:
            self._size = offset + done
        return done

    def flush(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise self._error("flush", exc) from exc

    def inactivate(self) -> None:
        """Make what was written stable before another process takes over (unless unsafe)."""
        if not self.node.cache.no_flush:
            self.flush()

    def invalidate_cache(self) -> None:
        """Drop the host page cache of the file (nothing to drop with O_DIRECT).

        Another process (the migration source) wrote the file meanwhile; what
        the kernel cached for us must not hide that, on a shared file system
        where the cache is not coherent. Flush first: fadvise leaves dirty
        pages in place.
        """
        self._size = None
        if self.node.cache.direct:
            return
        try:
            os.fdatasync(self.fd)
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            raise self._error("drop the page cache of", exc) from exc

    def truncate(self, size: int, *, preallocation: str = "off") -> None:
        old = self.getlength()
        try:
            if preallocation == "metadata":
                raise UsageError("Preallocation mode 'metadata' is not supported by 'file'")
            if preallocation == "falloc" and size > old:
                os.posix_fallocate(self.fd, old, size - old)
            elif preallocation == "full" and size > old:
                self._write_zeroes(old, size - old)
            else:
                os.ftruncate(self.fd, size)
        except OSError as exc:
            raise self._error(f"resize to {size} bytes", exc) from exc
        finally:
            self._size = None

    def _write_zeroes(self, offset: int, length: int) -> None:
        """Write zero buffers through the node, which aligns them for O_DIRECT."""
        zeros = memoryview(bytes(min(ZERO_CHUNK, length)))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self.node.pwrite(offset, zeros[:n])
            offset += n

    def pdiscard(self, offset: int, length: int) -> None:
        try:
            punch_hole(self.fd, offset, length)
        except OSError as exc:
            if exc.errno not in UNSUPPORTED:
                raise self._error(f"discard {length} bytes at offset {offset} of", exc) from exc
            log.debug("discard not supported on '%s': %s", self.node.filename, exc)

    def pwrite_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        end = offset + length
        old = self.getlength()
        try:
            if end > old:
                os.ftruncate(self.fd, end)  # the new tail reads as zeroes
                self._size = end
                length = max(0, old - offset)
            if length == 0:
                return
            if may_unmap and self._try(punch_hole, offset, length):
                return
            if self._try(zero_range, offset, length):
                return
        except OSError as exc:
            raise self._error(f"write zeroes at offset {offset} of", exc) from exc
        self._write_zeroes(offset, length)

    def _try(self, operation, offset: int, length: int) -> bool:
        try:
            operation(self.fd, offset, length)
        except OSError as exc:
            if exc.errno in UNSUPPORTED:
                return False
            raise
        return True

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """Data or hole, from SEEK_DATA/SEEK_HOLE; everything counts as data where unsupported."""
        size = self.getlength()
        if offset >= size:
            return BlockStatus(STATUS_ZERO | STATUS_ALLOCATED, length)
        try:
            data = os.lseek(self.fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a hole up to the end of the file
                data = size
            elif exc.errno in UNSUPPORTED:
                return BlockStatus(
                    STATUS_DATA | STATUS_OFFSET_VALID | STATUS_ALLOCATED, length, offset
                )
            else:
                raise self._error("get the allocation status of", exc) from exc
        flags = STATUS_OFFSET_VALID | STATUS_ALLOCATED
        if data > offset:
            return BlockStatus(flags | STATUS_ZERO, min(length, data - offset), offset)
        try:
            hole = os.lseek(self.fd, offset, os.SEEK_HOLE)
        except OSError as exc:
            raise self._error("get the allocation status of", exc) from exc
        return BlockStatus(flags | STATUS_DATA, min(length, hole - offset), offset)

    def actual_size(self) -> int | None:
        try:
            return os.fstat(self.fd).st_blocks * 512
        except OSError as exc:
            raise self._error("stat", exc) from exc
