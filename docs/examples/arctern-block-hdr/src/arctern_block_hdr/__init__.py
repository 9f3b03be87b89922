"""Example third-party Arctern block driver: raw data behind a small header."""
