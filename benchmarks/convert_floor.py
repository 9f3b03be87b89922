"""How close a 1 GiB convert comes to what the kernel needs, for qemu-img and arctern-img.

A convert of an image whose data sits in the page cache costs mostly the
kernel's work of filling a new file's pages. This script measures, in the same
run and on the same files, on tmpfs and on the disk:

* ``floor``: no tool at all, one thread writing the 768 MiB of data into a new
  file in 2 MiB pwrites from a buffer it never refills: the least any convert
  to a new file can cost on that file system;
* ``qemu-img``, ``arctern-img``: ``convert -O raw`` of a raw image holding that
  data (1 GiB, the rest a hole), wall time of the whole command;
* ``start-up``: ``info`` of a small image, each tool's fixed cost per command.

Each figure is the best of ``--repeat`` runs (the page cache is flushed with
``sync`` before each). What is left of a tool's time after the floor is its
own overhead; arctern-img's start-up alone is a sizeable part of it.

    .venv/bin/python benchmarks/convert_floor.py [--repeat N] [--disk-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tool_runs import run, timed_cold

ARCTERN_IMG = str(Path(sys.executable).parent / "arctern-img")
MiB = 1 << 20
SIZE, DATA, CHUNK = 1024 * MiB, 768 * MiB, 2 * MiB


def write_floor(target: Path) -> None:
    """Write DATA bytes into a new file, CHUNK at a time, from one warm buffer."""
    buffer = bytes([0x5A]) * CHUNK
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for offset in range(0, DATA, CHUNK):
            os.pwrite(fd, buffer, offset)
    finally:
        os.close(fd)


def measure(workdir: Path, repeat: int) -> list[tuple[str, float]]:
    source, small, out = workdir / "src.raw", workdir / "small.raw", workdir / "out.raw"
    run(["qemu-img", "create", "-q", "-f", "raw", str(source), str(SIZE)])
    run(["qemu-io", "-f", "raw", "-c", f"write -P 0x5a 0 {DATA}", str(source)])
    run(["qemu-img", "create", "-q", "-f", "raw", str(small), "1M"])
    convert = ["convert", "-f", "raw", "-O", "raw", str(source), str(out)]
    info = ["info", "-f", "raw", str(small)]
    actions = {
        "floor (one thread writing the data)": lambda: write_floor(out),
        "qemu-img convert": lambda: run(["qemu-img", *convert]),
        "arctern-img convert": lambda: run([ARCTERN_IMG, *convert]),
        "qemu-img start-up (info)": lambda: run(["qemu-img", *info]),
        "arctern-img start-up (info)": lambda: run([ARCTERN_IMG, *info]),
    }
    best = dict.fromkeys(actions, float("inf"))
    for _ in range(repeat):
        for label, action in actions.items():
            best[label] = min(best[label], timed_cold(action, out))
    return list(best.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (best is kept)")
    parser.add_argument("--disk-dir", default=None, help="a directory on disk (default: $TMPDIR)")
    args = parser.parse_args()
    # Byte-compiled once, as an installed package is (this environment may forbid .pyc files).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    places = [("tmpfs", "/dev/shm"), ("disk", args.disk_dir or tempfile.gettempdir())]
    for name, base in places:
        if not os.path.isdir(base):
            continue
        workdir = Path(tempfile.mkdtemp(prefix="arctern-floor-", dir=base))
        os.environ["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        try:
            rows = measure(workdir, args.repeat)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        floor = rows[0][1]
        print(f"{name} ({base}), 768 MiB of data in a 1 GiB raw image")
        for label, seconds in rows:
            print(f"  {label:<38}{seconds:>8.3f} s{seconds / floor:>8.2f}x floor")


if __name__ == "__main__":
    main()
