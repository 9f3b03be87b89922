"""Helpers of the system tests: build the C guests, run them under an emulator."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/: the guests runtime package

from guests.build import guest_elf, run_guest_both  # noqa: E402,F401  (fixtures)
from virtio_blk_helpers import virtio_blk_kernel  # noqa: E402,F401  (fixture)
