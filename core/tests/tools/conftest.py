"""Fixtures for the arctern-img / arctern-io tests: run a tool in-process, capture its output."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from arctern.cli import img, io


@dataclass
class Run:
    rc: int
    out: str
    err: str


@pytest.fixture
def arctern_img(capsys, monkeypatch, tmp_path):
    """``arctern_img("info", "x.raw")`` runs arctern-img in tmp_path and returns a Run."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Run:
        capsys.readouterr()
        rc = img.main(list(args))
        captured = capsys.readouterr()
        return Run(rc, captured.out, captured.err)

    return run


@pytest.fixture
def arctern_io(capsys, monkeypatch, tmp_path):
    """``arctern_io("-c", "read 0 4k", "x.raw")`` runs arctern-io in tmp_path."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: str | None = None) -> Run:
        if stdin is not None:
            import io as pyio

            monkeypatch.setattr("sys.stdin", pyio.StringIO(stdin))
        capsys.readouterr()
        rc = io.main(list(args))
        captured = capsys.readouterr()
        return Run(rc, captured.out, captured.err)

    return run
