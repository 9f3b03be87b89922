"""Start-up cost of the qcow2 driver: ``arctern-img info`` against ``qemu-img info``.

Rows:

* ``info``: wall time of ``arctern-img info IMG`` and ``qemu-img info IMG`` on a
  fresh 1 GiB qcow2 image, best of ``--repeat`` (the tools alternating); the
  ratio is qemu-img's time divided by arctern-img's (above 1.00 Arctern is
  faster). Measured twice: with byte-compiled modules (as an installed package
  has them; compiled once into a private PYTHONPYCACHEPREFIX) and without any
  (PYTHONDONTWRITEBYTECODE=1 and no cache: every start compiles every module);
* ``import``: what ``import arctern_block_qcow2.driver`` adds once the core
  modules it shares with every tool are loaded, from ``python -X importtime``
  (best of ``--repeat``), in both modes.

    .venv/bin/python benchmarks/qcow2_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARCTERN_IMG = str(Path(sys.executable).parent / "arctern-img")
#: Loaded by every tool before a format driver: not the driver's cost.
CORE = "import arctern.block.driver, arctern.block.copy, logging, threading, struct, zlib, io"


def best_wall(argv: list[str], env: dict[str, str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        if proc.returncode:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return best


def driver_import(env: dict[str, str], repeat: int) -> float:
    """Cumulative import time (s) of arctern_block_qcow2.driver after the core, best of N."""
    code = f"{CORE}; import arctern_block_qcow2.driver"
    best = float("inf")
    for _ in range(repeat):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        for line in err.splitlines():
            if line.endswith("| arctern_block_qcow2.driver"):
                best = min(best, int(line.split("|")[1]) / 1e6)
    return best


def environments(cache: Path) -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPYCACHEPREFIX",)}
    compiled = base | {"PYTHONPYCACHEPREFIX": str(cache)}
    compiled.pop("PYTHONDONTWRITEBYTECODE", None)
    return {"compiled": compiled, "no .pyc": base | {"PYTHONDONTWRITEBYTECODE": "1"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise SystemExit("qemu-img is needed (Debian package qemu-utils)")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.qcow2"
        subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(image), "1G"], check=True)
        envs = environments(Path(tmp) / "pycache")
        # Fill the private bytecode cache once.
        subprocess.run(
            [ARCTERN_IMG, "info", str(image)], env=envs["compiled"], check=True, capture_output=True
        )
        print(f"{'row':<22}{'arctern':>12}{'qemu-img':>12}{'ratio':>8}")
        for mode, env in envs.items():
            ours = best_wall([ARCTERN_IMG, "info", str(image)], env, args.repeat)
            peer = best_wall([qemu_img, "info", str(image)], env, args.repeat)
            print(
                f"{'info, ' + mode:<22}{ours * 1e3:>9.1f} ms{peer * 1e3:>9.1f} ms"
                f"{peer / ours:>8.2f}"
            )
        for mode, env in envs.items():
            took = driver_import(env, args.repeat)
            print(f"{'import, ' + mode:<22}{took * 1e3:>9.1f} ms{'-':>12}{'-':>8}")


if __name__ == "__main__":
    main()
