"""Shared by the virtio-blk fault tests: a file size limit that makes writes fail, and QMP.

The emulator process may not write past ``LIMIT`` bytes of any file
(RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with EFBIG instead of
killing the process); ``prlimit`` lifts the limit of the running process.
"""

from __future__ import annotations

import asyncio
import resource
import signal
from pathlib import Path

from qemu.qmp import ConnectError, QMPClient

LIMIT = 1 << 20
SECTOR = 512


def limit_file_size() -> None:
    """A ``preexec_fn``: the child (and what it execs) cannot write past LIMIT."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


async def connect_qmp(sock: Path, name: str = "virtio-blk-test") -> QMPClient:
    """Connect, retrying: the socket file appears before the emulator listens on it."""
    qmp = QMPClient(name)
    for attempt in range(400):
        try:
            await qmp.connect(str(sock))
            return qmp
        except (ConnectError, FileNotFoundError):
            if attempt == 399:
                raise
            await asyncio.sleep(0.025)
    return qmp


async def wait_status(qmp: QMPClient, *, leaving: str) -> str:
    """Poll query-status until the run state is no longer ``leaving``; return it."""
    status = leaving
    for _ in range(1200):
        status = (await qmp.execute("query-status"))["status"]
        if status != leaving:
            break
        await asyncio.sleep(0.025)
    return status
