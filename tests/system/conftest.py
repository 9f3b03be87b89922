"""Helpers of the system tests: build the C guests, run them under an emulator."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
