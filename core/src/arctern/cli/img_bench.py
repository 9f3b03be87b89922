"""``arctern-img bench``: qemu-img bench's sequential read/write benchmark and its output.

``-d N`` keeps N requests in flight, as qemu-img does, on N threads (reads and
writes release the GIL in the system call; a qcow2 image's metadata work takes
turns under its driver lock, as under QEMU's). With ``--flush-interval`` the
requests in flight are drained before each flush; with ``--no-drain`` the
flush is issued while the other requests go on, as qemu-img's. ``-n``/``-i``
(QEMU's AIO backend) have no effect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from arctern.errors import BlockError, UsageError

from .img_common import one_filename, open_image, parse_args
from .img_units import parse_size

WORKER_STACK_SIZE = 512 * 1024


@dataclass
class BenchParams:
    count: int = 75000
    depth: int = 64
    bufsize: int = 4096
    step: int = 0  # 0: same as bufsize
    offset: int = 0
    pattern: int = 0
    write: bool = False
    flush_interval: int = 0
    drain: bool = True  # --no-drain: flush with the other requests still in flight
    quiet: bool = False


def header_lines(p: BenchParams) -> list[str]:
    """The lines qemu-img bench prints before it starts."""
    lines = [
        f"Sending {p.count} {'write' if p.write else 'read'} requests, {p.bufsize} bytes each, "
        f"{p.depth} in parallel (starting at offset {p.offset}, step size {p.step})"
    ]
    if p.flush_interval:
        lines.append(f"Sending flush every {p.flush_interval} requests")
    return lines


def request_offsets(p: BenchParams, size: int) -> list[int]:
    """The offset of every request, in order: qemu-img's walk, wrapping before the end."""
    wrap = size - p.bufsize
    offsets, offset = [], p.offset
    for _ in range(p.count):
        offsets.append(offset)
        offset = 0 if wrap <= 0 else (offset + p.step) % wrap
    return offsets


def run_bench(backend, p: BenchParams) -> float:
    """Issue the requests, ``p.depth`` at a time; return the elapsed seconds."""
    offsets = request_offsets(p, backend.length)
    io = backend.pwrite if p.write else backend.preadinto
    interval = p.flush_interval or p.count
    batches = [offsets[i : i + interval] for i in range(0, p.count, interval)]
    start = time.perf_counter()
    if p.depth == 1:
        buf = memoryview(bytearray([p.pattern]) * p.bufsize)
        for batch in batches:
            for offset in batch:
                io(offset, buf)
            if p.flush_interval:
                backend.flush()
    else:
        # The workers only call into the block layer: small stacks let qemu-img's default
        # depth of 64 run under a tight address-space limit too.
        previous_stack_size = threading.stack_size(WORKER_STACK_SIZE)
        try:
            with ThreadPoolExecutor(p.depth, thread_name_prefix="arctern-bench") as pool:
                if p.flush_interval and not p.drain:
                    _run_batch(pool, io, offsets, p, flush=backend.flush)
                else:
                    for batch in batches:
                        _run_batch(pool, io, batch, p)
                        if p.flush_interval:
                            backend.flush()  # every request of the batch completed: drained
        except RuntimeError as exc:  # the system refused a thread
            raise BlockError(f"cannot keep {p.depth} requests in flight: {exc}") from None
        finally:
            threading.stack_size(previous_stack_size)
    return time.perf_counter() - start


def _run_batch(
    pool: ThreadPoolExecutor, io, batch: list[int], p: BenchParams, flush=None
) -> None:
    """Run ``batch`` with up to ``p.depth`` requests in flight; raise the first error.

    With ``flush`` (``--no-drain``), the completion after which as many requests
    remain as a multiple of the flush interval also flushes, on its own thread
    while the others go on (qemu-img's ``bench_cb``).
    """
    pending = iter(batch)
    lock = threading.Lock()
    remaining = len(batch)

    def issue() -> None:
        nonlocal remaining
        buf = memoryview(bytearray([p.pattern]) * p.bufsize)  # one per request in flight
        while True:
            with lock:
                offset = next(pending, None)
            if offset is None:
                return
            io(offset, buf)
            if flush is not None:
                with lock:
                    remaining -= 1
                    due = remaining % p.flush_interval == 0
                if due:
                    flush()

    for future in [pool.submit(issue) for _ in range(min(p.depth, len(batch)))]:
        future.result()


def _number(text: str, what: str, minimum: int = 1) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"Invalid {what} specified") from None
    if value < minimum or value > 0x7FFFFFFF:
        raise UsageError(f"Invalid {what} specified")
    return value


def _size(text: str, what: str) -> int:
    try:
        value = parse_size(text)
    except UsageError:
        raise UsageError(f"Invalid {what} specified") from None
    if value > 0x7FFFFFFF:
        raise UsageError(f"Invalid {what} specified")
    return value


def parse_bench_args(args: Sequence[str]) -> tuple[BenchParams, dict, str] | None:
    """Benchmark parameters, open options and the filename (None: help was asked for)."""
    opts, rest = parse_args(
        args,
        "c:d:f:hi:no:qs:S:t:Uw",
        ["help", "flush-interval=", "pattern=", "no-drain", "force-share"],
    )
    p = BenchParams()
    open_opts: dict = {"fmt": None, "cache": "writeback", "force_share": False}
    for opt, value in opts:
        if opt == "-c":
            p.count = _number(value, "request count")
        elif opt == "-d":
            p.depth = _number(value, "queue depth")
        elif opt == "-f":
            open_opts["fmt"] = value
        elif opt == "-o":
            p.offset = _size(value, "offset")
        elif opt == "-s":
            p.bufsize = _size(value, "buffer size")
            if p.bufsize == 0:
                raise UsageError("Invalid buffer size specified")
        elif opt == "-S":
            p.step = _size(value, "step size")
        elif opt == "-t":
            open_opts["cache"] = value
        elif opt in ("-U", "--force-share"):
            open_opts["force_share"] = True
        elif opt == "-w":
            p.write = True
        elif opt == "--pattern":
            p.pattern = _number(value, "pattern byte", minimum=0)
            if p.pattern > 0xFF:
                raise UsageError("Invalid pattern byte specified")
        elif opt == "--flush-interval":
            p.flush_interval = _number(value, "flush interval", minimum=0)
        elif opt == "--no-drain":
            p.drain = False
        elif opt == "-q":
            p.quiet = True
        elif opt in ("-h", "--help"):
            return None
    filename = one_filename(rest)
    if p.flush_interval and not p.write:
        raise UsageError("--flush-interval is only available in write tests")
    if p.flush_interval and p.flush_interval < p.depth:
        raise UsageError("Flush interval can't be smaller than depth")
    if p.write and open_opts["force_share"]:
        raise UsageError("--force-share/-U cannot be used with -w")
    p.step = p.step or p.bufsize
    open_opts["read_only"] = not p.write
    return p, open_opts, filename


def cmd_bench(args: Sequence[str]) -> int:
    parsed = parse_bench_args(args)
    if parsed is None:
        print(
            "usage: arctern-img bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] "
            "[-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] "
            "[-S step_size] [-t cache] [-U] [-w] filename"
        )
        return 0
    p, open_opts, filename = parsed
    backend = open_image(filename, **open_opts)
    try:
        if not p.quiet:
            print("\n".join(header_lines(p)), flush=True)
        elapsed = run_bench(backend, p)
    finally:
        backend.close()
    if not p.quiet:
        print(f"Run completed in {elapsed:3.3f} seconds.")
    return 0
