"""Fixtures of the devices tests. Helpers live in device_harness.py, the scripted guest
driver in ring_driver.py; this folder goes on sys.path so the tests can import them."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from device_harness import new_machine, open_drive  # noqa: E402


@pytest.fixture
def machine():
    m = new_machine()
    yield m
    m.close()


@pytest.fixture
def raw_drive(machine, tmp_path):
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.truncate(8 << 20)
    return open_drive(machine, path, "raw")
