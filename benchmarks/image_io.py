"""Image I/O: ``arctern-img`` against ``qemu-img`` with the same parameters, in one run.

Rows:

* ``bench`` at queue depth 1, 4 KiB and 64 KiB requests, reads and writes, on a fully
  written qcow2 image and a fully allocated raw image; for qcow2 also allocating writes
  into a fresh image (every request allocates clusters, L2 entries and refcounts);
* ``convert`` of an image of SIZE (60% random data, the rest holes) raw -> qcow2 and
  qcow2 -> raw, timed as whole commands (tool start-up included), best of two runs.

Each row prints both figures and the ratio (>1: Arctern faster). The figures move with
the machine's load: compare ratios from one run, not figures across runs.

    .venv/bin/python benchmarks/image_io.py [--count N] [--image-size MIB] [--convert-size MIB]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tool_runs import bench_seconds

MiB = 1 << 20
ARCTERN_IMG = str(Path(sys.executable).with_name("arctern-img"))
TOOLS = {"arctern": ARCTERN_IMG, "qemu": "qemu-img"}


def bench_rate(tool: str, fmt: str, path: str, size: int, count: int, write: bool) -> float:
    args = ["-f", fmt, "-d", "1", "-c", str(count), "-s", str(size)]
    return count / bench_seconds(TOOLS[tool], args + (["-w"] if write else []) + [path])


def fresh_image(path: str, fmt: str, size_mib: int, *options: str) -> str:
    if os.path.exists(path):
        os.remove(path)
    create = ["qemu-img", "create", "-q", "-f", fmt, *options, path, f"{size_mib}M"]
    subprocess.run(create, check=True)
    return path


def full_images(tmp: str, size_mib: int) -> dict[str, str]:
    """A qcow2 image with every cluster written, and a fully allocated raw image."""
    qcow2 = fresh_image(str(Path(tmp) / "full.qcow2"), "qcow2", size_mib)
    write = ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {size_mib}M", qcow2]
    subprocess.run(write, check=True, capture_output=True)
    raw = fresh_image(str(Path(tmp) / "full.raw"), "raw", size_mib, "-o", "preallocation=full")
    return {"qcow2": qcow2, "raw": raw}


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def write_sparse_raw(path: str, size: int) -> None:
    rng = random.Random(1)
    chunk = 4 * MiB
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in range(0, size, chunk):
            if rng.random() < 0.6:
                f.seek(offset)
                f.write(rng.randbytes(chunk))


def best_convert_times(source: str, fmt: str, target: str) -> dict[str, float]:
    """Best of two runs per tool, alternating which goes first (the page cache favours
    whoever runs second)."""
    best: dict[str, float] = {}
    for order in (("qemu", "arctern"), ("arctern", "qemu")):
        for tool in order:
            if os.path.exists(target):
                os.remove(target)
            elapsed = timed([TOOLS[tool], "convert", "-O", fmt, source, target])
            best[tool] = min(best.get(tool, elapsed), elapsed)
    return best


def row(name: str, ours: float, theirs: float, unit: str, higher_is_better: bool) -> None:
    ratio = ours / theirs if higher_is_better else theirs / ours
    print(f"{name:<34}{ours:>12.1f}{theirs:>12.1f} {unit:<6}{ratio:>7.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--image-size", type=int, default=256, help="MiB")
    parser.add_argument("--convert-size", type=int, default=1024, help="MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'row':<34}{'arctern':>12}{'qemu-img':>12} {'unit':<6}{'ratio':>7}")
        for fmt, path in full_images(tmp, args.image_size).items():
            for size in (4096, 65536):
                for write in (False, True):
                    rates = {
                        tool: bench_rate(tool, fmt, path, size, args.count, write) for tool in TOOLS
                    }
                    name = f"bench {fmt} {'write' if write else 'read'} {size // 1024}K"
                    row(name, rates["arctern"], rates["qemu"], "ops/s", True)
        fresh = str(Path(tmp) / "fresh.qcow2")
        for size in (4096, 65536):
            count = min(args.count, args.image_size * MiB // size)
            rates = {
                tool: bench_rate(
                    tool, "qcow2", fresh_image(fresh, "qcow2", args.image_size), size, count, True
                )
                for tool in TOOLS
            }
            row(
                f"bench qcow2 alloc write {size // 1024}K",
                rates["arctern"],
                rates["qemu"],
                "ops/s",
                True,
            )
        raw = str(Path(tmp) / "source.raw")
        write_sparse_raw(raw, args.convert_size * MiB)
        qcow2 = str(Path(tmp) / "converted.qcow2")
        back = str(Path(tmp) / "back.raw")
        for label, source, fmt, target in (
            ("raw->qcow2", raw, "qcow2", qcow2),
            ("qcow2->raw", qcow2, "raw", back),
        ):
            secs = best_convert_times(source, fmt, target)
            row(f"convert {label} {args.convert_size}M", secs["arctern"], secs["qemu"], "s", False)


if __name__ == "__main__":
    main()
