"""The length limit of unix socket paths, reported in QEMU's words before bind() fails.

``sockaddr_un.sun_path`` holds 108 bytes on Linux, the terminating NUL
included; a longer path makes Python's bind/connect raise an OSError without
an errno, which is no message for a user. QEMU checks first and says::

    UNIX socket path '/very/long/path' is too long
    Path must be less than 108 bytes
"""

from __future__ import annotations

import os

#: sizeof(sockaddr_un.sun_path) on Linux; a path must leave room for its NUL.
SUN_PATH_SIZE = 108


def fits_sun_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` can be bound or connected to as a unix socket."""
    return len(os.fsencode(path)) < SUN_PATH_SIZE


def too_long_message(path: str | os.PathLike[str]) -> str | None:
    """QEMU's two lines as one, or None when ``path`` fits."""
    if fits_sun_path(path):
        return None
    return (
        f"UNIX socket path '{os.fspath(path)}' is too long: "
        f"Path must be less than {SUN_PATH_SIZE} bytes"
    )
