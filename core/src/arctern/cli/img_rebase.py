"""``arctern-img rebase``: give an image another backing file, as qemu-img rebase does.

Safe mode (the default) keeps what the guest reads: wherever the image does not
hold the data itself and the old backing chain reads differently from the new
backing file, the old bytes are written into the image (only the differing
512-byte sectors), then the header names the new backing file. ``-u`` (unsafe)
only rewrites the name: for when the backing file was renamed or moved.
``-b ""`` removes the backing file (safe mode first copies in everything the
old chain provides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arctern.block.image import backing_path
from arctern.errors import BlockError, UsageError

from .img_buffers import first_difference, same
from .img_common import HELP_HINT, one_filename, open_failure, open_image, parse_args
from .img_progress import Progress

#: Bytes compared (and at most written) per step, as qemu-img's IO_BUF_SIZE.
STEP = 2 << 20
SECTOR = 512


def cmd_rebase(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "hf:F:b:upqt:T:U", ["help", "force-share"])
    fmt = new_fmt = new_backing = None
    unsafe = progress = quiet = force_share = False
    cache, src_cache = "writeback", "writeback"
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-F":
            new_fmt = value
        elif opt == "-b":
            new_backing = value
        elif opt == "-u":
            unsafe = True
        elif opt == "-p":
            progress = True
        elif opt == "-q":
            quiet = True
        elif opt == "-t":
            cache = value
        elif opt == "-T":
            src_cache = value
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img rebase [-f fmt] [-t cache] [-T src_cache] [-p] [-q] [-u] "
                "[-U] -b backing_file [-F backing_fmt] filename"
            )
            return 0
    filename = one_filename(rest)
    if new_backing is None:
        raise UsageError(f"Must specify backing file (-b) or use unsafe mode (-u); {HELP_HINT}")
    new_backing = new_backing or None  # -b "": no backing file any more
    if new_backing and not new_fmt:
        raise BlockError(
            f"Could not change the backing file to '{new_backing}': "
            "backing format must be specified"
        )
    image = open_image(filename, fmt=fmt, cache=cache, backing=not unsafe)
    try:
        if not unsafe:
            _keep_guest_view(
                image,
                filename,
                new_backing,
                new_fmt,
                src_cache,
                force_share,
                progress and not quiet,
            )
        image.node.driver.change_backing_file(new_backing, new_fmt)
    finally:
        image.close()
    return 0


def _keep_guest_view(
    image: Any,
    filename: str,
    new_backing: str | None,
    new_fmt: str | None,
    cache: str,
    force_share: bool,
    show_progress: bool,
) -> None:
    """Copy into ``image`` what the old chain shows and the new backing file would not."""
    new = None
    if new_backing:
        path = backing_path(filename, new_backing)
        try:
            new = open_image(
                path, fmt=new_fmt, read_only=True, cache=cache, force_share=force_share
            )
        except BlockError as exc:
            raise BlockError(
                f"Could not open new backing file '{path}': {open_failure(path, exc)}"
            ) from exc
    try:
        progress = Progress(show_progress, image.length)
        old_buf, new_buf = memoryview(bytearray(STEP)), memoryview(bytearray(STEP))
        offset = 0
        while offset < image.length:
            status = image.node.driver.block_status(offset, min(STEP, image.length - offset))
            count = min(status.length, STEP, image.length - offset)
            if not status.flags:  # not allocated in the image: the backing chain shows
                _rewrite_differences(image, new, offset, old_buf[:count], new_buf[:count])
            offset += count
            progress.advance(count)
        progress.finish()
    finally:
        if new is not None:
            new.close()


def _rewrite_differences(image: Any, new: Any, offset: int, old: memoryview, fresh: memoryview):
    """Write the sectors of ``[offset, offset + len(old))`` that the new backing changes."""
    image.preadinto(offset, old)
    visible = 0 if new is None else max(0, min(len(fresh), new.length - offset))
    if visible:
        new.preadinto(offset, fresh[:visible])
    fresh[visible:] = bytes(len(fresh) - visible)
    if same(old.obj, fresh):
        return
    pos = 0
    while pos < len(old):
        start = pos + first_difference(old[pos:], fresh[pos:], SECTOR)
        if start >= len(old):
            return
        stop = start + SECTOR
        while stop < len(old) and not same(
            bytes(old[stop : stop + SECTOR]), fresh[stop : stop + SECTOR]
        ):
            stop += SECTOR
        stop = min(stop, len(old))
        image.pwrite(offset + start, old[start:stop])
        pos = stop
