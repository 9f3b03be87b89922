"""Arctern: a machine emulator framework whose every moving part is a plugin."""

__version__ = "0.1.0"
