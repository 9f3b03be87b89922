"""Emulator processes driven over QMP, for the tests that run guests under both emulators.

``connect_qmp`` retries while the emulator starts listening (its socket file
appears before it does), ``wait_status`` and ``migrate`` poll until a run state
or a migration settles, and ``migration_pair`` starts a migration source and
its ``-incoming`` destination from one command line::

    with migration_pair(command, workdir) as pair:
        src, dst = await connect_qmp(pair.src_sock), await connect_qmp(pair.dst_sock)
        assert await migrate(src, pair.uri) == "completed"
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import ConnectError, QMPClient

#: Generous: an emulator starts in well under a second, but CI shares two cores.
TIMEOUT = 60.0
_POLL = 0.025
_MIGRATION_ENDS = ("completed", "failed", "cancelled")


async def connect_qmp(sock: Path, name: str = "guest-test", timeout: float = TIMEOUT) -> QMPClient:
    """A client connected to the QMP server at ``sock``, retrying until ``timeout``."""
    client = QMPClient(name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.connect(str(sock))
            return client
        except (ConnectError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(_POLL)


async def disconnect_all(*clients: QMPClient) -> None:
    """Disconnect each client; one whose emulator has quit already is fine."""
    for client in clients:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()


async def wait_status(qmp: QMPClient, *, leaving: str, timeout: float = TIMEOUT) -> str:
    """Poll query-status until the run state is no longer ``leaving``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        status = (await qmp.execute("query-status"))["status"]
        if status != leaving or time.monotonic() > deadline:
            return status
        await asyncio.sleep(_POLL)


async def migrate(src: QMPClient, uri: str, timeout: float = TIMEOUT) -> str | None:
    """Start a migration to ``uri`` and poll query-migrate until it ends; its last status."""
    await src.execute("migrate", {"uri": uri})
    deadline = time.monotonic() + timeout
    while True:
        status = (await src.execute("query-migrate")).get("status")
        if status in _MIGRATION_ENDS or time.monotonic() > deadline:
            return status
        await asyncio.sleep(_POLL)


def qmp_option(sock: Path) -> list[str]:
    """The emulator options of a QMP server on the Unix socket ``sock``."""
    return ["-qmp", f"unix:{sock},server=on,wait=off"]


@dataclass
class MigrationPair:
    """A migration source and its destination, each with a QMP socket."""

    source: subprocess.Popen
    dest: subprocess.Popen
    src_sock: Path
    dst_sock: Path
    uri: str


@contextlib.contextmanager
def migration_pair(
    command: Sequence[str],
    workdir: Path,
    *,
    source_preexec: Callable[[], None] | None = None,
) -> Iterator[MigrationPair]:
    """Start ``command`` twice, the second with ``-incoming unix:WORKDIR/mig``; both
    have their output on pipes and are killed when the block ends."""
    src_sock, dst_sock, uri = workdir / "src.qmp", workdir / "dst.qmp", f"unix:{workdir}/mig"
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    source = subprocess.Popen([*command, *qmp_option(src_sock)], preexec_fn=source_preexec, **pipes)
    try:
        dest = subprocess.Popen([*command, *qmp_option(dst_sock), "-incoming", uri], **pipes)
    except BaseException:
        source.kill()
        source.wait()
        raise
    try:
        yield MigrationPair(source, dest, src_sock, dst_sock, uri)
    finally:
        for process in (source, dest):
            process.kill()
            process.wait()
