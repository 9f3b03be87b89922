"""Run Arctern's tools and QEMU's side by side (the real qemu-img / qemu-io 7.2)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TIMING = re.compile(r"^.*ops; .* ops/sec\)$", re.MULTILINE)
PARSABLE = re.compile(r"^(\d+),(\d+),\d+:\d\d:\d\d\.\d\d,[0-9.]+,[0-9.]+$", re.MULTILINE)
RUN_COMPLETED = re.compile(r"^Run completed in [0-9.]+ seconds\.$", re.MULTILINE)


@dataclass
class Result:
    rc: int
    out: str
    err: str


def _run(argv: list, cwd: Path, stdin: str | None = None) -> Result:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=300
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Tools:
    """``tools.img(...)`` / ``tools.qemu_img(...)`` etc., all run in one directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    @staticmethod
    def program(name: str) -> str:
        """Path of an Arctern console script of this environment."""
        return str(BIN / name)

    def img(self, *args) -> Result:
        return _run([BIN / "arctern-img", *args], self.cwd)

    def io(self, *args, stdin: str | None = None) -> Result:
        return _run([BIN / "arctern-io", *args], self.cwd, stdin)

    def qemu_img(self, *args) -> Result:
        return _run(["qemu-img", *args], self.cwd)

    def qemu_io(self, *args, stdin: str | None = None) -> Result:
        return _run(["qemu-io", *args], self.cwd, stdin)

    def ok(self, result: Result) -> str:
        assert result.rc == 0, result
        return result.out


@pytest.fixture
def tools(tmp_path, monkeypatch):
    for tool in ("qemu-img", "qemu-io"):
        assert shutil.which(tool), f"{tool} is required (Debian package qemu-utils)"
    monkeypatch.chdir(tmp_path)
    return Tools(tmp_path)


def untimed(text: str) -> str:
    """Output with qemu-io's timing lines and qemu-img bench's run time blanked out."""
    text = PARSABLE.sub(r"\1,\2,<timing>", TIMING.sub("<timing>", text))
    return RUN_COMPLETED.sub("Run completed.", text)


def same_tool_prefix(text: str) -> str:
    return text.replace("arctern-img:", "qemu-img:").replace("arctern-io:", "qemu-io:")


@pytest.fixture
def normalize():
    return lambda text: same_tool_prefix(untimed(text))

