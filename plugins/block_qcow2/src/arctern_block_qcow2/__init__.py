"""Arctern block driver: the qcow2 image format (v2 and v3)."""
