"""arctern-img against qemu-img, measured in the same run on the same images.

Rows:

* ``bench``: ``arctern-img bench`` and ``qemu-img bench`` with identical
  parameters (4 KiB and 64 KiB requests, reads and writes, queue depth 1) on a
  qcow2 and a raw image whose data is allocated; the figure is the run time
  each tool reports ("Run completed in X seconds.");
* ``convert``: a 1 GiB qcow2 image with 768 MiB of data converted to raw, and
  the raw image converted to qcow2, plainly and with copy offload (``-C``,
  copy_file_range, both tools); the figure is the wall time of the whole
  command (startup included), with the page cache flushed (``sync``) before
  each run;
* ``start-up``: ``info`` of the small raw image, the wall time of the whole
  command, which is almost only the tool's start-up. It is part of every
  ``convert`` figure above and shows how much of each gap it explains.

Every measurement is repeated (``--repeat``, the two tools alternating) and the
best time of each tool is kept. The ratio is qemu-img's time divided by
arctern-img's: above 1.00 Arctern is faster.

    .venv/bin/python benchmarks/bench_img.py [--dir DIR] [--repeat N] [--quick]

DIR defaults to a fresh directory in /dev/shm (tmpfs, so that the disk's
write-back does not drown the difference between the tools) if it exists.
Python modules are byte-compiled once into DIR (as an installed package has
them), not on every start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tool_runs import bench_seconds, run, timed_cold

ARCTERN_IMG = str(Path(sys.executable).parent / "arctern-img")
MiB = 1 << 20


def wall_time(argv: list[str], cleanup: Path) -> float:
    return timed_cold(lambda: run(argv), cleanup)


def best_of(repeat: int, qemu, arctern) -> tuple[float, float]:
    """Best time of each tool over ``repeat`` alternating runs."""
    q, a = [], []
    for _ in range(repeat):
        q.append(qemu())
        a.append(arctern())
    return min(q), min(a)


def prepare(workdir: Path, convert_size: int, bench_size: int) -> dict[str, Path]:
    images = {
        "bench-qcow2": workdir / "bench.qcow2",
        "bench-raw": workdir / "bench.raw",
        "convert-qcow2": workdir / "convert-src.qcow2",
        "convert-raw": workdir / "convert-src.raw",
    }
    for fmt in ("qcow2", "raw"):
        path = images[f"bench-{fmt}"]
        run(["qemu-img", "create", "-q", "-f", fmt, str(path), str(bench_size)])
        run(["qemu-io", "-f", fmt, "-c", f"write -P 0x5a 0 {bench_size}", str(path)])
    src = images["convert-qcow2"]
    data = convert_size * 3 // 4
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), str(convert_size)])
    run(
        [
            "qemu-io",
            "-c",
            f"write -P 0x33 0 {data // 2}",
            "-c",
            f"write -P 0xc4 {data // 2 + 16 * MiB} {data // 2}",
            str(src),
        ]
    )
    run(["qemu-img", "convert", "-O", "raw", str(src), str(images["convert-raw"])])
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="working directory (default: a new one in /dev/shm)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (best is kept)")
    parser.add_argument("--quick", action="store_true", help="small counts and a 256 MiB image")
    args = parser.parse_args()
    for tool in ("qemu-img", "qemu-io", ARCTERN_IMG):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")
    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    workdir = Path(tempfile.mkdtemp(prefix="arctern-bench-", dir=base))
    # Byte-compile Arctern's modules once, as a pip install does, instead of on every start
    # (this environment sets PYTHONDONTWRITEBYTECODE); the cache stays out of the source tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    convert_size = 256 * MiB if args.quick else 1 << 30
    counts = {4096: 5000, 65536: 1000} if args.quick else {4096: 50000, 65536: 10000}
    try:
        images = prepare(workdir, convert_size, 256 * MiB)
        rows = []
        for fmt in ("qcow2", "raw"):
            for size, count in counts.items():
                for write in (False, True):
                    params = ["-f", fmt, "-d", "1", "-c", str(count), "-s", str(size)]
                    params += ["-w"] if write else []
                    image = str(images[f"bench-{fmt}"])
                    q, a = best_of(
                        args.repeat,
                        lambda p=params, i=image: bench_seconds("qemu-img", [*p, i]),
                        lambda p=params, i=image: bench_seconds(ARCTERN_IMG, [*p, i]),
                    )
                    label = f"bench {'write' if write else 'read '} {size // 1024:>2}K {fmt:5}"
                    rows.append((f"{label} (d=1, {count} reqs)", q, a))
        out = workdir / "out"
        for label, src, fmt, flags in (
            ("convert qcow2 -> raw", "convert-qcow2", "raw", []),
            ("convert raw -> qcow2", "convert-raw", "qcow2", []),
            ("convert -C qcow2 -> raw", "convert-qcow2", "raw", ["-C"]),
            ("convert -C raw -> qcow2", "convert-raw", "qcow2", ["-C"]),
        ):
            argv = ["convert", *flags, "-O", fmt, str(images[src]), str(out)]
            q, a = best_of(
                args.repeat,
                lambda v=argv: wall_time(["qemu-img", *v], out),
                lambda v=argv: wall_time([ARCTERN_IMG, *v], out),
            )
            rows.append((f"{label} ({convert_size // MiB} MiB)", q, a))
        info = ["info", str(images["bench-raw"])]
        q, a = best_of(
            args.repeat,
            lambda: wall_time(["qemu-img", *info], out),
            lambda: wall_time([ARCTERN_IMG, *info], out),
        )
        rows.append(("start-up (info of a raw image)", q, a))
        print(f"{'operation':<42}{'qemu-img':>11}{'arctern-img':>13}{'ratio':>8}")
        for label, q, a in rows:
            print(f"{label:<42}{q:>9.3f} s{a:>11.3f} s{q / a:>7.2f}x")
        print("ratio = qemu-img time / arctern-img time (above 1.00: arctern-img is faster)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
