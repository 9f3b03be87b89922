"""Arctern block drivers: the file protocol and the raw format."""
