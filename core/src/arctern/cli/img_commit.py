"""``arctern-img commit``: write an image's own data into its backing file, as qemu-img commit.

What the image holds itself (data, and zeroes it stores) is written into the
backing file, grown first if the image is larger; then the image is emptied
(unless ``-d``), so that it reads as the backing file, which now holds it all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from arctern.block.driver import STATUS_DATA, STATUS_ZERO
from arctern.block.image import backing_path
from arctern.errors import BlockError, UsageError

from .img_common import one_filename, open_image, parse_args
from .img_progress import Progress

CHUNK = 2 << 20


def cmd_commit(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "hf:t:b:dpqr:", ["help"])
    fmt, cache, base, keep, progress, quiet = None, "writeback", None, False, False, False
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-t":
            cache = value
        elif opt == "-b":
            base = value
        elif opt == "-d":
            keep = True
        elif opt == "-p":
            progress = True
        elif opt == "-q":
            quiet = True
        elif opt == "-r":
            pass  # a rate limit: the copy runs at full speed
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img commit [-q] [-f fmt] [-t cache] [-b base] [-d] [-p] "
                "[-r rate_limit] filename"
            )
            return 0
    filename = one_filename(rest)
    top = open_image(filename, fmt=fmt, cache=cache, backing=False)
    try:
        driver = top.node.driver
        if not driver.backing_filename:
            raise BlockError("Image does not have a backing file")
        base_name = backing_path(filename, driver.backing_filename)
        if base is not None and not os.path.samefile(base, base_name):
            raise UsageError(
                f"'{base}' is not the backing file of '{filename}' "
                "(Arctern commits into the image's own backing file only)"
            )
        target = open_image(base_name, fmt=driver.backing_format, cache=cache, discard="unmap")
        try:
            _copy_own_data(top, target, Progress(progress and not quiet, top.length))
            target.flush()
        finally:
            target.close()
        if not keep:
            driver.make_empty()
        top.flush()
    finally:
        top.close()
    if not quiet:
        print("Image committed.")
    return 0


def _copy_own_data(top: Any, target: Any, progress: Progress) -> None:
    """Write what ``top`` holds itself into ``target`` (grown to ``top``'s size first)."""
    if target.length < top.length:
        target.truncate(top.length)
    buf = memoryview(bytearray(CHUNK))
    offset = 0
    while offset < top.length:
        status = top.node.driver.block_status(offset, min(CHUNK, top.length - offset))
        count = min(status.length, CHUNK, top.length - offset)
        if status.flags & STATUS_ZERO:
            target.pwrite_zeroes(offset, count, may_unmap=True)  # frees clusters, as QEMU
        elif status.flags & STATUS_DATA:
            top.preadinto(offset, buf[:count])
            target.pwrite(offset, buf[:count])
        offset += count
        progress.advance(count)
    progress.finish()
