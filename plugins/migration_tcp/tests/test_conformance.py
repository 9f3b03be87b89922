"""tcp: and unix: through the migration-transport conformance kit."""

from __future__ import annotations

from arctern.testing.migration import MigrationTransportConformance


class TestTcp(MigrationTransportConformance):
    scheme = "tcp"

    def endpoints(self, tmp_path):
        return "tcp:127.0.0.1:0", ""

    def connect_uri(self, listener, connect):
        return f"tcp:127.0.0.1:{listener.address()['port']}"

    def unreachable(self, tmp_path):
        return "tcp:127.0.0.1:1"


class TestUnix(MigrationTransportConformance):
    scheme = "unix"

    def endpoints(self, tmp_path):
        uri = f"unix:{tmp_path / 'migration.sock'}"
        return uri, uri

    def unreachable(self, tmp_path):
        return f"unix:{tmp_path / 'nobody.sock'}"
