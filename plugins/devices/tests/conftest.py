"""Shared fixtures of the devices tests; ring_driver.py (the scripted guest driver) lives here."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
