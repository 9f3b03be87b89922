"""A writer killed with SIGKILL at random moments leaves a consistent image.

qemu-img check must find no corruption (leaked clusters are allowed) and every
slot reported durable by a flush before the kill must read back intact. Each
run continues where the durable data ends, so later runs also open, extend and
copy-on-write around images left behind by a killed writer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arctern.block import create_image, open_image

WRITER = Path(__file__).with_name("crash_writer.py")
_spec = importlib.util.spec_from_file_location("crash_writer", WRITER)
writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer)


def _run_and_kill(path: str, first: int, slot_size: int, delay: float, options: dict) -> int:
    """Start a writer at slot ``first``, SIGKILL it after ``delay`` s; return durable slots."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), path, str(first), str(slot_size), json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    durable = [int(line) for line in out.split()]
    return max(durable, default=first)


def _check_slots(tools, path: str, durable: int, slot_size: int) -> None:
    raw = tools.raw_by_qemu(path)
    for i in range(durable):
        offset = writer.slot_offset(i, slot_size)
        data = writer.slot_data(i, slot_size)
        assert raw[offset : offset + len(data)] == data, f"flushed slot {i} lost"


TINY_CACHES = {"l2-cache-size": 1024, "refcount-cache-size": 1024}


@pytest.mark.parametrize(
    "cluster,bits,options",
    [(512, 16, {}), (4096, 1, {}), (65536, 64, {}), (512, 64, TINY_CACHES)],
    ids=["512-r16", "4k-r1", "64k-r64", "512-r64-tiny-caches"],
)
def test_sigkill_during_allocating_writes(tools, cluster, bits, options):
    """Killed at random moments; tiny caches make tables leave the cache mid-request."""
    path = tools.path("crash.qcow2")
    create_image(path, "qcow2", 48 << 20, {"cluster_size": cluster, "refcount_bits": bits})
    slot_size = 3 * cluster + 333
    rng = random.Random(cluster + bits)
    durable = 0
    for _ in range(10):
        durable = _run_and_kill(path, durable, slot_size, rng.uniform(0.01, 0.3), options)
        check = tools.qemu_img("check", "--output=json", path, ok=(0, 3))
        assert "corruptions" not in json.loads(check.stdout), check.stdout
        _check_slots(tools, path, durable, slot_size)
    assert durable > 0


def test_sigkill_with_lazy_refcounts_is_repaired_on_reopen(tools):
    """Lazy refcounts leave a dirty image; the next writer repairs it before writing."""
    path = tools.path("lazy.qcow2")
    create_image(path, "qcow2", 32 << 20, {"cluster_size": 4096, "lazy_refcounts": "on"})
    slot_size = 3 * 4096 + 333
    rng = random.Random(5)
    durable = 0
    for _ in range(6):
        durable = _run_and_kill(path, durable, slot_size, rng.uniform(0.01, 0.3), {})
        _check_slots(tools, path, durable, slot_size)
    with open_image(path, fmt="qcow2") as image:
        image.pwrite(0, b"\x01")
    tools.assert_qemu_check_clean(path)
    _check_slots(tools, path, durable, slot_size)
