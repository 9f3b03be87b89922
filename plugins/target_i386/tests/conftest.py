"""Fixtures of the i386 CPU tests; the harness lives in i386_guest.py."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from i386_guest import Guest  # noqa: E402


@pytest.fixture
def guest() -> Guest:
    return Guest()
