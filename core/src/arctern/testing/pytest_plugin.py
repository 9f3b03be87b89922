"""pytest plugin of the Arctern conformance kit (loaded through the pytest11 entry point)."""
