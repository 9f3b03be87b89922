"""``arctern-img commit``: write an image's own data into its backing file, as qemu-img commit.

What the image holds itself (data, and zeroes it stores) is written into the
backing file, grown first if the image is larger; then the image is emptied
(unless ``-d``), so that it reads as the backing file, which now holds it all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from arctern.block.driver import STATUS_DATA, STATUS_ZERO
from arctern.block.image import backing_path
from arctern.errors import BlockError, UsageError

from .img_common import one_filename, open_image, parse_args
from .img_progress import Progress
from .img_units import size_argument

CHUNK = 2 << 20


def cmd_commit(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "hf:t:b:dpqr:", ["help"])
    fmt, cache, base, keep, progress, quiet = None, "writeback", None, False, False, False
    rate = 0
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
            rate = size_argument(value, "rate limit")
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
            limit = RateLimit(rate)
            _copy_own_data(top, target, Progress(progress and not quiet, top.length), limit)
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


class RateLimit:
    """Hold a copy to ``rate`` bytes per second on average (0: unlimited), as QEMU's block jobs.

    Only what is copied counts (data and zeroes the image holds), not the
    ranges it leaves to its backing file.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.copied = 0

    def account(self, count: int) -> None:
        if self.rate:
            self.copied += count
            ahead = self.copied / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                time.sleep(ahead)


def _copy_own_data(top: Any, target: Any, progress: Progress, limit: RateLimit) -> None:
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
            limit.account(count)
        elif status.flags & STATUS_DATA:
            top.preadinto(offset, buf[:count])
            target.pwrite(offset, buf[:count])
            limit.account(count)
        offset += count
        progress.advance(count)
    progress.finish()
