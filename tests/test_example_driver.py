"""The out-of-tree example driver, installed the way a user installs it (pip).

A copy of it with ``invalidate_cache`` deleted must be refused with the
one-line message of the contract: that is the promise the plugin author
guide makes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "arctern-block-hdr"
BIN = Path(sys.executable).parent


def _copy_without_invalidate_cache(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    src = dest / "src"
    (src / "arctern_block_hdr").rename(src / "arctern_block_hdr_refused")
    for path in [dest / "pyproject.toml", *src.rglob("*.py")]:
        text = path.read_text()
        text = text.replace("arctern_block_hdr", "arctern_block_hdr_refused")
        text = text.replace("arctern-block-hdr", "arctern-block-hdr-refused")
        text = text.replace('hdr = "', 'hdr-refused = "')  # its own entry point name
        path.write_text(text)
    driver = src / "arctern_block_hdr_refused" / "driver.py"
    text = driver.read_text()
    start = text.index("    def invalidate_cache(self)")
    end = text.index("\n    def ", start + 1)
    driver.write_text(text[:start] + text[end + 1 :])
    assert "def invalidate_cache" not in driver.read_text()
    return dest


def _plugins(*args: str, site: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCTERN_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [str(BIN / "arctern-plugins"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_example_driver_is_installed_and_enabled():
    proc = _plugins("list", "--output=json", site=Path("/nonexistent"))
    assert proc.returncode == 0, proc.stderr
    records = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}
    hdr = records[("block", "hdr")]
    assert (hdr["distribution"], hdr["status"], hdr["provides"]) == (
        "arctern-block-hdr",
        "enabled",
        ["hdr"],
    )


def test_copy_without_invalidate_cache_is_refused(tmp_path):
    project = _copy_without_invalidate_cache(tmp_path / "project")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    expected = (
        "arctern: block driver 'hdr' (arctern-block-hdr-refused 0.1.0) refused: "
        "missing required hook invalidate_cache"
    )
    proc = _plugins("list", "--output=json", site=site)
    records = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}
    refused = records[("block", "hdr-refused")]
    assert refused["status"] == "refused"
    assert refused["reason"] == expected
    check = _plugins("check", "arctern-block-hdr-refused", site=site)
    assert check.returncode == 1
    assert check.stderr.strip() == expected
