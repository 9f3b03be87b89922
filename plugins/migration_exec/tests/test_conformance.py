"""exec: through the migration-transport conformance kit (a file between the two commands)."""

from __future__ import annotations

from arctern.testing.migration import MigrationTransportConformance


class TestExec(MigrationTransportConformance):
    scheme = "exec"
    sequential = True

    def endpoints(self, tmp_path):
        state = tmp_path / "state"
        return f"exec:cat {state}", f"exec:cat > {state}"

    def unreachable(self, tmp_path):
        return f"exec:cat > {tmp_path}/no/such/dir/state"
