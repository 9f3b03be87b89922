"""The build as a user gets it from README's set-up: every in-tree plugin enabled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
IN_TREE = {
    ("block", "raw"): ("arctern-block-raw", {"file", "raw"}),
    ("block", "qcow2"): ("arctern-block-qcow2", {"qcow2"}),
    ("target", "i386"): ("arctern-target-i386", {"qemu32", "microvm"}),
    ("device", "common"): (
        "arctern-devices",
        {"isa-serial", "i8259", "i8254", "isa-debug-exit", "virtio-mmio", "virtio-blk-device"},
    ),
    ("migration", "tcp"): ("arctern-migration-tcp", {"tcp", "unix"}),
    ("migration", "exec"): ("arctern-migration-exec", {"exec"}),
}


def _listing(*args: str) -> dict[tuple[str, str], dict]:
    proc = subprocess.run(
        [str(BIN / "arctern-plugins"), "--strict-plugins", "list", "--output=json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}


@pytest.mark.parametrize("key", sorted(IN_TREE))
def test_in_tree_plugin_is_enabled_with_its_version(key):
    record = _listing()[key]
    distribution, provides = IN_TREE[key]
    assert record["distribution"] == distribution
    assert record["status"] == "enabled", record["reason"]
    assert record["version"] == "0.1.0"
    assert provides <= set(record["provides"])
