"""arctern-demo, the README's main command: it migrates its built-in guest and says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = str(Path(sys.executable).with_name("arctern-demo"))


def test_demo_migrates_the_running_guest_and_verifies(tmp_path):
    result = subprocess.run(
        [DEMO, "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "migration completed" in out
    assert "verified 600 sectors and the RAM area" in out
    assert "No errors were found on the image." in out
    assert out.rstrip().endswith("everything verified")
    # what it left behind for a curious user: the image and both sides' serial output
    assert (tmp_path / "disk.qcow2").exists()
    assert "round 100 ok" in (tmp_path / "source.serial").read_text()
    assert "verified" in (tmp_path / "destination.serial").read_text()


def test_bad_option_is_one_line():
    result = subprocess.run([DEMO, "--ram", "8"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == "arctern-demo: --ram: the demo guest needs at least 16 MiB\n"
