"""Send a list of QMP requests through the qemu.qmp client and keep each reply or error,
for the tests that compare arctern-system's answers with qemu-system-i386's."""

from __future__ import annotations

import contextlib
from pathlib import Path

from qemu.qmp import ExecuteError
from test_system_monitor import connect


async def replies_to(sock: Path, requests: list[tuple[str, dict]]) -> list[dict]:
    """``{"return": ...}`` or ``{"error": {"class", "desc"}}`` for each (command, arguments)."""
    client = await connect(sock)
    replies = []
    try:
        for name, args in requests:
            try:
                replies.append({"return": await client.execute(name, args or None)})
            except ExecuteError as exc:
                replies.append({"error": {"class": exc.error_class, "desc": str(exc)}})
    finally:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()
    return replies
