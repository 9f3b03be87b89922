"""Arctern migration transports: tcp: and unix: URIs."""
