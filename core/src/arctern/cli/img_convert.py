"""``arctern-img convert``: copy images into a new (or, with -n, existing) image.

The copy walks the allocation status of the source chain: ranges that read as
zeroes are never read, and are not written either when the target already reads
as zeroes (a new image without a backing file). Data ranges are read in large
chunks into one preallocated buffer; with ``-S`` (4 KiB by default) zero runs
inside them are skipped too, so the target stays sparse. With ``-C`` data ranges
are not read at all but copied with copy offload (``BlockBackend.copy_range``:
copy_file_range between the files), as qemu-img's ``-C``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from arctern.errors import BlockError, UsageError

from .img_buffers import ZERO_CHUNK, is_zero
from .img_common import (
    HELP_HINT,
    open_image,
    parse_args,
)
from .img_create import target_options, typed_options
from .img_pipeline import PipelinedWriter
from .img_progress import Progress
from .img_status import walk
from .img_units import parse_size

CHUNK = 2 << 20
OFFLOAD_CHUNK = 64 << 20
DEFAULT_SPARSE = 4096


@dataclass
class ConvertPlan:
    """What to copy and how."""

    min_sparse: int = DEFAULT_SPARSE  # 0: write every byte (fully allocated target)
    zero_init: bool = False  # the target reads as zeroes before we write
    target_has_backing: bool = False  # copy only the source's top layer
    compressed: bool = False
    offload: bool = False  # -C: copy data with copy_range (no zero detection inside it)


def zero_runs(data: bytearray, size: int, granule: int) -> Iterator[tuple[int, int, bool]]:
    """Split ``data[:size]`` into (start, end, is_zero) runs of whole ``granule``-sized pieces."""
    view = memoryview(data)[:size]
    if is_zero(view):
        yield 0, size, True
        return
    zero_granule = memoryview(ZERO_CHUNK)[:granule]
    if not 0 < granule < size or data.find(zero_granule, 0, size) < 0:
        yield 0, size, False  # no zero granule anywhere: one data run (a C-speed search)
        return
    run_start, run_zero = 0, None
    for start in range(0, size, granule):
        piece_is_zero = ZERO_CHUNK.startswith(view[start : start + granule])
        if piece_is_zero is not run_zero and run_zero is not None:
            yield run_start, start, run_zero
            run_start = start
        run_zero = piece_is_zero
    yield run_start, size, bool(run_zero)


def whole_clusters(
    actions: Iterable[tuple[int, int, str]], cluster: int, end: int
) -> Iterator[tuple[int, int, str]]:
    """``actions`` with every data run starting and ending on a cluster boundary.

    A compressed image is written a whole cluster at a time, so a zero or skipped
    run that does not cover whole clusters is copied as data with its neighbours
    (as qemu-img convert -c does); only its whole clusters stay zero or skipped.
    """
    pending: int | None = None  # start of the data run not yet handed on
    for start, length, action in actions:
        stop = start + length
        first = -(-start // cluster) * cluster
        last = stop if stop == end else stop // cluster * cluster
        if action == "data" or last <= first:
            pending = start if pending is None else pending
            continue
        if pending is None and start < first:
            pending = start
        if pending is not None:
            yield pending, first - pending, "data"
            pending = None
        yield first, last - first, action
        if last < stop:
            pending = last
    if pending is not None:
        yield pending, end - pending, "data"


class Copier:
    """Copies ranges from sources into ``target``; the writes run on a writer thread."""

    def __init__(self, target: Any, plan: ConvertPlan, progress: Progress) -> None:
        self.plan = plan
        self.progress = progress
        write = (
            getattr(target.node.driver, "pwrite_compressed", None)
            if plan.compressed
            else target.pwrite
        )
        self.writer = PipelinedWriter(target, write, CHUNK)
        self.cluster = (plan.compressed and target.node.driver.info().cluster_size) or 1

    def copy(self, source: Any, base: int) -> None:
        """Copy all of ``source`` to the target at ``base``."""
        actions = self._actions(source)
        if self.plan.compressed:
            actions = whole_clusters(actions, self.cluster, source.length)
        for start, length, action in actions:
            if action == "zero":
                self.writer.submit(None, self._zero(base + start, length))
            elif action == "data":
                self._data(source, start, length, base)
            self.progress.advance(length)

    def _actions(self, source: Any) -> Iterator[tuple[int, int, str]]:
        """(start, length, "data" | "zero" | "skip") runs covering the source."""
        for entry in walk(source.node, 0, source.length):
            if self.plan.target_has_backing and entry.depth > 0:
                action = "skip"  # comes from the target's backing file too
            elif entry.zero and not (entry.data and self.plan.min_sparse == 0):
                action = "zero"
            else:
                action = "data"
            yield entry.start, entry.length, action

    def finish(self) -> None:
        """Wait for the last writes."""
        self.writer.close()

    def _zero(self, offset: int, length: int) -> list[tuple]:
        if self.plan.min_sparse == 0:
            return [("zero", offset, length, False)]
        if not self.plan.zero_init:
            return [("zero", offset, length, True)]
        return []

    def _data(self, source: Any, offset: int, length: int, base: int) -> None:
        if self.plan.offload:
            self._offload(source, offset, length, base)
            return
        end = offset + length
        while offset < end:
            count = min(CHUNK, end - offset)
            buffer = self.writer.buffer()
            chunk = buffer[:count]
            source.preadinto(offset, chunk)
            target = base + offset
            if self.plan.compressed or self.plan.min_sparse == 0:
                requests = [("data", target, chunk, 0, count)]
            else:
                requests = []
                for start, stop, zero in zero_runs(chunk.obj, count, self.plan.min_sparse):
                    if zero:
                        requests += self._zero(target + start, stop - start)
                    else:
                        requests.append(("data", target + start, chunk, start, stop))
            self.writer.submit(buffer, requests)
            offset += count

    def _offload(self, source: Any, offset: int, length: int, base: int) -> None:
        """Queue copy_range requests (in pieces, so that progress and errors keep up)."""
        end = offset + length
        while offset < end:
            count = min(OFFLOAD_CHUNK, end - offset)
            self.writer.submit(None, [("copy", base + offset, source, offset, count)])
            offset += count


def _open_sources(names: list[str], fmt: str | None, cache: str, force_share: bool) -> list:
    sources: list[Any] = []
    try:
        for name in names:
            sources.append(
                open_image(name, fmt=fmt, read_only=True, cache=cache, force_share=force_share)
            )
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def cmd_convert(args: Sequence[str]) -> int:
    opts, rest = parse_args(
        args,
        "B:F:O:S:T:UCcf:hm:no:pqt:W",
        [
            "help",
            "force-share",
            "target-is-zero",
        ],
    )
    fmt, out_fmt, cache, src_cache = None, "raw", "unsafe", "writeback"
    progress = quiet = no_create = force_share = target_is_zero = False
    plan = ConvertPlan()
    explicit_sparse = False
    option_texts: list[str] = []
    target_backing: dict[str, str] = {}
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-O":
            out_fmt = value
        elif opt == "-o":
            option_texts.append(value)
        elif opt == "-B":
            target_backing["backing_file"] = value
        elif opt == "-F":
            target_backing["backing_fmt"] = value
        elif opt == "-c":
            plan.compressed = True
        elif opt == "-C":
            plan.offload = True
        elif opt == "-p":
            progress = True
        elif opt == "-q":
            quiet = True
        elif opt == "-n":
            no_create = True
        elif opt == "-S":
            plan.min_sparse = _sparse_size(value)
            explicit_sparse = True
        elif opt == "-t":
            cache = value
        elif opt == "-T":
            src_cache = value
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt == "--target-is-zero":
            target_is_zero = True
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img convert [-c] [-C] [-p] [-q] [-n] [-f fmt] [-t cache] "
                "[-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] "
                "[-o options] [-S sparse_size] [-U] filename [filename2 [...]] output_filename"
            )
            return 0
    if plan.offload and plan.compressed:
        raise UsageError("Cannot enable copy offloading when -c is used")
    if plan.offload and explicit_sparse:
        raise UsageError("Cannot enable copy offloading when -S is used")
    target = target_options(out_fmt, option_texts)
    if target is None:
        return 0
    cls, options = target
    if plan.compressed and not hasattr(cls, "pwrite_compressed"):
        raise BlockError("Compression not supported for this file format")
    if len(rest) < 2:
        raise UsageError(f"Expecting image file name; {HELP_HINT}")
    if no_create and (options or target_backing):
        raise UsageError("-n and -o/-B cannot be used together")
    if target_is_zero and not no_create:
        raise UsageError("--target-is-zero requires use of -n flag")
    plan.zero_init = target_is_zero  # with -n: trust the user that the target reads as zeroes
    options.update(target_backing)
    if "backing_file" in options and "backing_fmt" not in options:
        raise UsageError("Backing file specified without backing format")
    *names, out_name = rest
    sources = _open_sources(names, fmt, src_cache, force_share)
    try:
        _convert(
            sources,
            out_name,
            out_fmt,
            typed_options(options),
            cache,
            no_create,
            plan,
            progress and not quiet,
        )
    finally:
        for source in sources:
            source.close()
    return 0


def _convert(
    sources: list,
    out_name: str,
    out_fmt: str,
    options: dict,
    cache: str,
    no_create: bool,
    plan: ConvertPlan,
    show_progress: bool,
) -> None:
    from arctern import block

    total = sum(source.length for source in sources)
    if not no_create:
        block.create_image(out_name, out_fmt, total, options)
    plan.target_has_backing = "backing_file" in options
    if not no_create:  # a new image reads as zeroes unless its backing file shows through
        plan.zero_init = not plan.target_has_backing
    target = open_image(out_name, fmt=out_fmt, cache=cache)
    try:
        if no_create and target.length < total:
            raise BlockError("Target image is too small for the input")
        progress = Progress(show_progress, total)
        copier = Copier(target, plan, progress)
        try:
            base = 0
            for source in sources:
                copier.copy(source, base)
                base += source.length
        finally:
            copier.finish()
        target.flush()
        progress.finish()
    finally:
        target.close()


def _sparse_size(text: str) -> int:
    try:
        size = parse_size(text)
    except UsageError:
        raise UsageError(
            "Invalid buffer size for sparse output specified. Valid sizes are "
            "multiples of 512 up to 16 MiB."
        ) from None
    if size % 512 or size > 16 << 20:
        raise UsageError(
            "Invalid buffer size for sparse output specified. Valid sizes are "
            "multiples of 512 up to 16 MiB."
        )
    return size
