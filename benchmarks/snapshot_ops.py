"""``arctern-img snapshot -c / -a / -d`` against ``qemu-img snapshot``, wall time per command.

Each tool works on its own copy of the same image (written by qemu-io: every
cluster of the first half of the disk holds data); one round creates a
snapshot, rewrites 1 MiB, lists the snapshots, applies the snapshot and deletes it. The figures are
the best of ``--repeat`` rounds per command (process start included, as a user
sees it); the ratio is qemu-img's time divided by arctern-img's (above 1.00
Arctern is faster).

    .venv/bin/python benchmarks/snapshot_ops.py [--repeat N] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tool_runs import run

ARCTERN_IMG = str(Path(sys.executable).parent / "arctern-img")
#: (label, cluster size, virtual size, bytes of data)
IMAGES = [
    ("64K clusters, 512 MiB data", "64k", "1G", "512M"),
    ("512 B clusters, 64 MiB data", "512", "128M", "64M"),
]
#: ``-l`` (read-only, prints one line) shows what starting the tool costs.
COMMANDS = [("-c", ["s1"]), ("-l", []), ("-a", ["s1"]), ("-d", ["s1"])]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    run(argv)
    return time.perf_counter() - start


def one_round(tool: str, image: str) -> dict[str, float]:
    times = {}
    for option, operands in COMMANDS:
        times[option] = timed([tool, "snapshot", option, *operands, image])
        if option == "-c":
            run(["qemu-io", "-c", "write -P 9 0 1M", image])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    args = parser.parse_args()
    print(f"{'operation':<44}{'qemu-img':>10}{'arctern-img':>13}{'ratio':>8}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for label, cluster, size, data in IMAGES:
            base = f"{tmp}/base.qcow2"
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}",
                 base, size])  # fmt: skip
            run(["qemu-io", "-c", f"write -P 1 0 {data}", base])
            best = {tool: dict.fromkeys(dict(COMMANDS), float("inf")) for tool in ("q", "a")}
            for _ in range(args.repeat):
                for key, tool in (("q", "qemu-img"), ("a", ARCTERN_IMG)):
                    image = f"{tmp}/{key}.qcow2"
                    shutil.copyfile(base, image)
                    for option, seconds in one_round(tool, image).items():
                        best[key][option] = min(best[key][option], seconds)
                    run(["qemu-img", "check", "-q", image])
            for option, _ in COMMANDS:
                q, a = best["q"][option], best["a"][option]
                row = f"snapshot {option} ({label})"
                print(f"{row:<44}{q:>8.3f} s{a:>11.3f} s{q / a:>7.2f}x")


if __name__ == "__main__":
    main()
