"""Arctern migration transport: exec: URIs (a shell command carries the stream)."""
