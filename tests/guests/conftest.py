"""Fixtures of the tests of the guest runtime's own drivers (the guests in this folder)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the guests package

from guests.build import guest_elf, run_guest_both  # noqa: E402,F401  (fixtures)
