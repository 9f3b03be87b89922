"""Fixtures that build small plugin distributions on disk, the way pip leaves them.

A distribution here is a folder on PYTHONPATH holding a package and a
``NAME.dist-info`` with METADATA and entry_points.txt: exactly what
importlib.metadata (and so stevedore) reads after ``pip install``. Commands
run in a subprocess so each test sees a fresh entry-point view.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


class FakeSite:
    """A directory of hand-made distributions, added to PYTHONPATH of subprocesses."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, dist: str, version: str, namespace: str, entry: str, module: str, code: str):
        package = self.root / module
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text("")
        (package / "plugin.py").write_text(textwrap.dedent(code))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[{namespace}]\n{entry} = {module}.plugin\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCTERN_")}
        env["PYTHONPATH"] = str(self.root)
        env["HOME"] = str(self.root)  # keeps stevedore's entry-point cache per test
        env.update(extra)
        return env

    def run(self, *args: str, cwd: Path | None = None, **env: str):
        return subprocess.run(
            [str(BIN / "arctern-plugins"), *args],
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=cwd or self.root,
            timeout=60,
        )

    def listing(self, *args: str, **env: str) -> dict[tuple[str, str], dict]:
        proc = self.run(*args, "list", "--output=json", **env)
        assert proc.returncode == 0, proc.stderr
        return {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}


@pytest.fixture
def site(tmp_path: Path) -> FakeSite:
    root = tmp_path / "site"
    root.mkdir()
    return FakeSite(root)


@pytest.fixture
def good_driver() -> str:
    """Source of a block driver plugin that honours the whole contract."""
    return GOOD_DRIVER


GOOD_DRIVER = """
    from arctern.block.driver import BlockDriver
    from arctern.hookspecs import hookimpl

    class GoodDriver(BlockDriver):
        name = "good"

        def open(self, options): pass
        def close(self): pass
        def getlength(self): return 0
        def pread(self, offset, buf): pass
        def pwrite(self, offset, data): pass
        def flush(self): pass
        def invalidate_cache(self): pass  # nothing cached: an honest no-op

    @hookimpl
    def arctern_block_drivers():
        return [GoodDriver]
"""
