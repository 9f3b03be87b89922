"""Image locks that QEMU understands: OFD byte-range locks as file-posix takes them.

On the image file, a shared lock on byte ``100 + N`` means "I use permission
N" and a shared lock on byte ``200 + N`` means "I do not share permission N"
(N as in :mod:`arctern.block.permissions`). All locks are shared (read) locks;
a conflict shows as an exclusive lock that could not be placed: a new user of
permission N tests byte 200+N, a user that refuses to share N tests byte
100+N. Locks are open-file-description (OFD) locks: they belong to the open
file, not to the process, so two opens in one process conflict like two
processes do, and closing the descriptor releases them.

Python's :mod:`fcntl` has no F_OFD_* constants and ``lockf`` takes classic
POSIX locks (owned by the process, so never in conflict within it, and
dropped when any descriptor of the file is closed), so ``struct flock`` is
packed by hand.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct

from arctern.block import permissions
from arctern.errors import BlockError, ImageLockError

log = logging.getLogger(__name__)

F_OFD_GETLK = 36
F_OFD_SETLK = 37
PERM_BASE = 100
SHARED_BASE = 200

# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid (0 for OFD locks), padded to 32 bytes on 64-bit.
_FLOCK = struct.Struct("@hhqqi4x")

_UNSUPPORTED = (errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def _fcntl(fd: int, cmd: int, lock_type: int, byte: int) -> int:
    packed = _FLOCK.pack(lock_type, os.SEEK_SET, byte, 1, 0)
    result = fcntl.fcntl(fd, cmd, packed)
    return _FLOCK.unpack(result)[0]


def ofd_supported(fd: int) -> bool:
    """Whether OFD locks work on ``fd`` (kernel and filesystem)."""
    try:
        _fcntl(fd, F_OFD_GETLK, fcntl.F_RDLCK, PERM_BASE)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True


def _set(fd: int, byte: int, locked: bool) -> None:
    _fcntl(fd, F_OFD_SETLK, fcntl.F_RDLCK if locked else fcntl.F_UNLCK, byte)


def _someone_else_holds(fd: int, byte: int) -> bool:
    """True if another open file holds a lock on ``byte`` (an exclusive lock would fail)."""
    return _fcntl(fd, F_OFD_GETLK, fcntl.F_WRLCK, byte) != fcntl.F_UNLCK


class ImageLock:
    """The lock bytes one open image file holds, changed atomically from one state to another.

    ``apply(perm, shared)`` takes the new set first and then checks for
    conflicts (so that two processes racing for the image both see the
    conflict), and goes back to the previous set if there is one.
    """

    def __init__(self, fd: int, filename: str) -> None:
        self.fd = fd
        self.filename = filename
        self.perm = permissions.NONE
        self.shared = permissions.ALL

    def apply(self, perm: int, shared: int) -> None:
        old_perm, old_shared = self.perm, self.shared
        try:
            # Hold the union of old and new while checking, as QEMU does.
            self._hold(perm | old_perm, ~shared & permissions.ALL | ~old_shared & permissions.ALL)
            self._check(perm, shared)
        except BaseException:
            self._hold_quietly(old_perm, ~old_shared & permissions.ALL)
            raise
        self._hold(perm, ~shared & permissions.ALL)
        self.perm, self.shared = perm, shared

    def release(self) -> None:
        """Drop every lock byte (an inactive node holds no locks)."""
        self._hold_quietly(permissions.NONE, permissions.NONE)
        self.perm, self.shared = permissions.NONE, permissions.ALL

    def _hold(self, used: int, unshared: int) -> None:
        try:
            for i in range(len(permissions.NAMES)):
                _set(self.fd, PERM_BASE + i, bool(used & (1 << i)))
                _set(self.fd, SHARED_BASE + i, bool(unshared & (1 << i)))
        except OSError as exc:
            raise BlockError(
                f"Failed to lock '{self.filename}': {os.strerror(exc.errno or 0)}"
            ) from exc

    def _hold_quietly(self, used: int, unshared: int) -> None:
        try:
            self._hold(used, unshared)
        except BlockError as exc:
            log.warning("%s", exc)

    def _check(self, perm: int, shared: int) -> None:
        try:
            for i, name in enumerate(permissions.NAMES):
                bit = 1 << i
                if perm & bit and _someone_else_holds(self.fd, SHARED_BASE + i):
                    self._conflict(f'Failed to get "{name}" lock')
            for i, name in enumerate(permissions.NAMES):
                bit = 1 << i
                if not shared & bit and _someone_else_holds(self.fd, PERM_BASE + i):
                    self._conflict(f'Failed to get shared "{name}" lock')
        except OSError as exc:
            raise BlockError(
                f"Failed to check the locks of '{self.filename}': {os.strerror(exc.errno or 0)}"
            ) from exc

    def _conflict(self, what: str) -> None:
        raise ImageLockError(f"{what}. Is another process using the image [{self.filename}]?")
