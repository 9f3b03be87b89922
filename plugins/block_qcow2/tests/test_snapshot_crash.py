"""A snapshot operation killed before any one of its writes leaves a consistent image.

The image has free clusters amid used ones, where the operation puts its new
tables. The operation is run once to count its writes, then again from the same image
killed (SIGKILL) just before write 1, 2, ... in turn: ``qemu-img check`` must find
no corruption every time (leaks are allowed), and the image must be wholly as
before or wholly as after, snapshot list and data alike.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CRASHER = Path(__file__).with_name("snapshot_crasher.py")


def run(path: str, operation: str, argument: str, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CRASHER), path, operation, argument, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def state(tools, path: str) -> tuple[list, bytes]:
    info = json.loads(tools.qemu_img("info", "--output=json", path).stdout)
    return [s["name"] for s in info.get("snapshots", [])], tools.raw_by_qemu(path)


@pytest.mark.parametrize(
    "operation,argument", [("create", "new"), ("goto", "old"), ("delete", "old")]
)
def test_sigkill_before_each_write_of_a_snapshot_operation(tools, operation, argument):
    prepared = tools.path("prepared.qcow2")
    tools.qemu_create(prepared, "2M", "cluster_size=4k")
    tools.qemu_io(prepared, "write -P 1 0 600k", "write -c -P 2 1M 64k")
    tools.qemu_img("snapshot", "-c", "old", prepared)
    # Free clusters amid used ones: the operation writes its new tables there.
    tools.qemu_io(prepared, "write 1500k 100k", "write -P 3 100k 300k", "discard 1500k 100k")
    tools.qemu_io(prepared, "write -z 1M 4k")
    before = state(tools, prepared)
    path = tools.path("victim.qcow2")
    shutil.copyfile(prepared, path)
    finished = run(path, operation, argument, 0)
    assert finished.returncode == 0, finished.stderr
    writes = int(finished.stdout)
    after = state(tools, path)
    assert after != before
    for kill_at in range(1, writes + 1):
        shutil.copyfile(prepared, path)
        killed = run(path, operation, argument, kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        check = tools.qemu_img("check", "--output=json", path, ok=(0, 3))
        assert "corruptions" not in json.loads(check.stdout), (kill_at, check.stdout)
        assert state(tools, path) in (before, after), f"killed before write {kill_at}"
