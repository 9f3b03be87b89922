"""Arctern target: the i386 CPU and the microvm machine."""
