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


def _run_and_kill(
    path: str, first: int, slot_size: int, delay: float, options: dict, discard: bool = False
) -> int:
    """Start a writer at slot ``first``, SIGKILL it after ``delay`` s; return durable slots."""
    args = [sys.executable, str(WRITER), path, str(first), str(slot_size), json.dumps(options)]
    proc = subprocess.Popen(
        args + (["discard"] if discard else []), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    durable = [int(line) for line in out.split()]
    return max(durable, default=first)


def _discarded_view(data: bytes, offset: int, cluster: int) -> bytes:
    """``data`` at guest ``offset`` after a discard of its range: whole clusters read zero."""
    start = -(-offset // cluster) * cluster - offset
    stop = (offset + len(data)) // cluster * cluster - offset
    return data[:start] + bytes(stop - start) + data[stop:]


def _check_slots(
    tools, path: str, durable: int, slot_size: int, cluster: int = 0, attempted: int = 0
) -> None:
    """Slots below ``durable`` hold their data; with ``cluster``, discarded slots their zeroes.

    ``attempted`` is how far writers may have got: a discard issued by a slot at or past
    ``durable`` may or may not have reached the disk.
    """
    raw = tools.raw_by_qemu(path)
    victims = {}
    if cluster:
        victims = {writer.discarded_by(i): i for i in range(attempted) if writer.discarded_by(i)}
    for i in range(durable):
        offset = writer.slot_offset(i, slot_size)
        data = writer.slot_data(i, slot_size)
        found = raw[offset : offset + len(data)]
        if i in victims:
            gone = _discarded_view(data, offset, cluster)
            allowed = (gone,) if victims[i] < durable else (data, gone)
            assert found in allowed, f"slot {i}: discard not durable or data lost"
        else:
            assert found == data, f"flushed slot {i} lost"


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


def test_sigkill_during_discards(tools):
    """Frees are ordered too: a discard's clusters are reused only once it is on disk."""
    path = tools.path("discard.qcow2")
    cluster = 4096
    create_image(path, "qcow2", 32 << 20, {"cluster_size": cluster})
    slot_size = 3 * cluster + 333
    rng = random.Random(99)
    durable = attempted = 0
    for _ in range(8):
        start = durable
        durable = _run_and_kill(path, start, slot_size, rng.uniform(0.01, 0.3), {}, True)
        attempted = max(attempted, durable + 4)
        check = tools.qemu_img("check", "--output=json", path, ok=(0, 3))
        assert "corruptions" not in json.loads(check.stdout), check.stdout
        _check_slots(tools, path, durable, slot_size, cluster, attempted)
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
