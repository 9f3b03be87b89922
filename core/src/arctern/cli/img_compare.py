"""``arctern-img compare``: do two images read the same? qemu-img compare's messages and codes.

Exit codes: 0 identical, 1 different, 2 an image could not be opened, 3 the
allocation status could not be read, 4 the data could not be read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from arctern.errors import ArcternError, UsageError

from .img_buffers import ZERO_CHUNK, first_difference, is_zero, same
from .img_common import HELP_HINT, open_image, parse_args
from .img_progress import Progress
from .img_status import MapEntry, chain_entry

SAME, DIFFERENT, OPEN_ERROR, STATUS_ERROR, READ_ERROR = 0, 1, 2, 3, 4
CHUNK = 2 << 20
SECTOR = 512


class CompareFailed(Exception):
    """Ends the comparison with an exit code and a message for stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Comparer:
    """Walks two images side by side, reading only what is not known to be zeroes."""

    def __init__(
        self,
        first: tuple[str, Any],
        second: tuple[str, Any],
        strict: bool,
        progress: Progress,
        quiet: bool = False,
    ) -> None:
        self.helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arctern-compare")
        self.images = (first, second)
        self.quiet = quiet
        self.strict = strict
        self.progress = progress
        self.buffers = (bytearray(CHUNK), bytearray(CHUNK))

    def run(self) -> int | None:
        """The offset of the first difference, or None if the images read the same."""
        try:
            return self._run()
        finally:
            self.helper.shutdown()

    def _run(self) -> int | None:
        (_, one), (_, two) = self.images
        common = min(one.length, two.length)
        offset = 0
        while offset < common:
            first = self._status(0, offset, common - offset)
            second = self._status(1, offset, first.length)
            count = min(first.length, second.length)
            if self.strict and _kind(first) != _kind(second):
                raise CompareFailed(
                    DIFFERENT, f"Strict mode: Offset {offset} block status mismatch!"
                )
            if not (first.zero and second.zero):
                mismatch = self._compare_data(offset, count)
                if mismatch is not None:
                    return mismatch
            self.progress.advance(count)
            offset += count
        if one.length != two.length:
            _say(self.quiet, "Warning: Image size mismatch!")
            longer = 0 if one.length > two.length else 1
            return self._check_zero(longer, common, self.images[longer][1].length)
        return None

    def _status(self, which: int, offset: int, length: int) -> MapEntry:
        name, backend = self.images[which]
        try:
            return chain_entry(backend.node, offset, length)
        except ArcternError as exc:
            raise CompareFailed(
                STATUS_ERROR, f"Sector allocation test failed for {name}: {exc}"
            ) from exc

    def _read(self, which: int, offset: int, count: int) -> memoryview:
        name, backend = self.images[which]
        view = memoryview(self.buffers[which])[:count]
        try:
            backend.preadinto(offset, view)
        except ArcternError as exc:
            raise CompareFailed(
                READ_ERROR, f"Error while reading offset {offset} of {name}: {exc}"
            ) from exc
        return view

    def _compare_data(self, offset: int, length: int) -> int | None:
        end = offset + length
        while offset < end:
            count = min(CHUNK, end - offset)
            # the second image is read on a helper thread while this one reads the first
            pending = self.helper.submit(self._read, 1, offset, count)
            try:
                one = self._read(0, offset, count)
            except BaseException:
                wait([pending])  # never leave a read of the other image running
                raise
            two = pending.result()
            if not same(self.buffers[0], two):
                return offset + first_difference(one, two, SECTOR)
            offset += count
        return None

    def _check_zero(self, which: int, offset: int, end: int) -> int | None:
        while offset < end:
            entry = self._status(which, offset, end - offset)
            if not entry.zero:
                stop = offset + entry.length
                while offset < stop:
                    count = min(CHUNK, stop - offset)
                    data = self._read(which, offset, count)
                    if not is_zero(data):
                        zeros = memoryview(ZERO_CHUNK)[:count]
                        return offset + first_difference(data, zeros, SECTOR)
                    offset += count
            offset = entry.start + entry.length
        return None


def _kind(entry: MapEntry) -> tuple[bool, bool, bool]:
    return entry.present, entry.zero, entry.data


def cmd_compare(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "F:T:Uf:hpqs", ["help", "force-share"])
    fmts: list[str | None] = [None, None]
    progress = quiet = strict = force_share = False
    cache = "writeback"
    for opt, value in opts:
        if opt == "-f":
            fmts[0] = value
        elif opt == "-F":
            fmts[1] = value
        elif opt == "-T":
            cache = value
        elif opt == "-p":
            progress = True
        elif opt == "-q":
            quiet = True
        elif opt == "-s":
            strict = True
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] "
                "[-U] filename1 filename2"
            )
            return 0
    if len(rest) != 2:
        raise UsageError(f"Expecting two image file names; {HELP_HINT}")
    backends: list[Any] = []
    try:
        for name, fmt in zip(rest, fmts, strict=True):
            backends.append(
                open_image(name, fmt=fmt, read_only=True, cache=cache, force_share=force_share)
            )
        return _compare(
            list(zip(rest, backends, strict=True)), strict, progress and not quiet, quiet
        )
    except ArcternError as exc:
        print(f"arctern-img: {exc}", file=sys.stderr)
        return OPEN_ERROR
    finally:
        for backend in backends:
            backend.close()


def _compare(images: list[tuple[str, Any]], strict: bool, show_progress: bool, quiet: bool) -> int:
    (_, one), (_, two) = images
    if strict and one.length != two.length:
        _say(quiet, "Strict mode: Image size mismatch!")
        return DIFFERENT
    progress = Progress(show_progress, max(one.length, two.length))
    try:
        mismatch = Comparer(images[0], images[1], strict, progress, quiet).run()
    except CompareFailed as exc:
        if exc.code == DIFFERENT:
            _say(quiet, str(exc))
        else:
            print(f"arctern-img: {exc}", file=sys.stderr)
        return exc.code
    if mismatch is not None:
        _say(quiet, f"Content mismatch at offset {mismatch}!")
        return DIFFERENT
    _say(quiet, "Images are identical.")
    progress.end()
    return SAME


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message)
