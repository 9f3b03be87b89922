"""Raw-image I/O through Arctern's BlockBackend against `qemu-img bench`, same parameters.

Each row issues COUNT sequential requests of SIZE bytes at queue depth 1 over a
raw image, through ``BlockBackend.preadinto``/``pwrite`` on one side and
``qemu-img bench -d 1`` on the other, and prints both rates and the ratio
(>1: Arctern faster). The two alternate ROUNDS times per row and the best
rate of each counts, so that load from other processes does not decide.

    .venv/bin/python benchmarks/block_layer_raw.py [--count N] [--rounds R] [--image-size MIB]
"""

from __future__ import annotations

import argparse
import mmap
import tempfile
import time
from pathlib import Path

from tool_runs import bench_seconds

from arctern.block import create_image, open_image

MiB = 1 << 20


def arctern_rate(path: str, write: bool, size: int, count: int, cache: str) -> float:
    with open_image(path, fmt="raw", cache=cache) as backend:
        length = backend.length
        # page-aligned memory, like qemu-img's qemu_blockalign() buffers and guest RAM
        area = mmap.mmap(-1, size)
        area.write(b"\xa5" * size)
        buf = memoryview(area)
        op = backend.pwrite if write else backend.preadinto
        start = time.perf_counter()
        offset = 0
        for _ in range(count):
            op(offset, buf)
            offset = (offset + size) % length
        if write:
            backend.flush()
        elapsed = time.perf_counter() - start
        buf.release()
        area.close()
    return count / elapsed


def qemu_rate(path: str, write: bool, size: int, count: int, cache: str) -> float:
    args = ["-f", "raw", "-t", cache, "-d", "1", "-c", str(count), "-s", str(size)]
    return count / bench_seconds("qemu-img", args + (["-w"] if write else []) + [path])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=256, help="MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.raw")
        create_image(path, "raw", args.image_size * MiB, {"preallocation": "full"})
        print(f"{'row':<28}{'arctern ops/s':>15}{'qemu-img ops/s':>16}{'ratio':>8}")
        for cache in ("writeback", "none"):
            for size in (4096, 65536):
                for write in (False, True):
                    row = f"{'write' if write else 'read'} {size // 1024}K cache={cache}"
                    ours = theirs = 0.0
                    for _ in range(args.rounds):
                        ours = max(ours, arctern_rate(path, write, size, args.count, cache))
                        theirs = max(theirs, qemu_rate(path, write, size, args.count, cache))
                    print(f"{row:<28}{ours:>15.0f}{theirs:>16.0f}{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
