"""Running the image tools from the benchmarks: their output, and the time ``bench`` reports.

Imported by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this
folder is on sys.path). A tool that fails ends the benchmark with its error.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

RUN_COMPLETED = re.compile(r"Run completed in ([0-9.]+) seconds\.")


def run(argv: list[str]) -> str:
    """The standard output of ``argv``."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def bench_seconds(tool: str, args: list[str]) -> float:
    """The run time ``TOOL bench ARGS`` reports (qemu-img's and arctern-img's wording)."""
    out = run([tool, "bench", *args])
    match = RUN_COMPLETED.search(out)
    if match is None:
        raise SystemExit(f"{tool} bench printed no run time: {out!r}")
    return float(match.group(1))


def timed_cold(action: Callable[[], object], output: Path) -> float:
    """Wall time of ``action`` writing ``output`` afresh: removed before and after, and the
    page cache flushed (``sync``) first, so no run inherits another's dirty pages."""
    output.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    output.unlink(missing_ok=True)
    return elapsed
