"""The ``exec:COMMAND`` migration transport: a shell command carries the stream.

Outgoing, the stream goes to the command's standard input
(``exec:cat > FILE``, ``exec:gzip -c > FILE``); incoming, it comes from its
standard output (``exec:cat FILE``, ``exec:gzip -dc FILE``). The command
runs through ``/bin/sh -c`` as in QEMU. A command that fails is reported
with its exit status and the last line it wrote to standard error.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading

from arctern.errors import TransportError
from arctern.hookspecs import hookimpl
from arctern.migration.transport import (
    MigrationListener,
    MigrationStream,
    MigrationTransport,
    split_uri,
)

log = logging.getLogger(__name__)

SHELL = "/bin/sh"


def parse_exec(uri: str) -> str:
    _scheme, command = split_uri(uri)
    if not command.strip():
        raise TransportError(f"bad migration URI '{uri}': exec: needs a command")
    return command


class CommandStream(MigrationStream):
    """One pipe end of a shell command: its stdin (outgoing) or its stdout (incoming)."""

    def __init__(self, command: str, *, outgoing: bool) -> None:
        self.command = command
        self.description = f"exec:{command}"
        self.outgoing = outgoing
        self._stderr = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.process = subprocess.Popen(
                [SHELL, "-c", command],
                stdin=subprocess.PIPE if outgoing else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if outgoing else subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise TransportError(f"cannot run {SHELL} for {self.description}: {exc}") from None
        pipe = self.process.stdin if outgoing else self.process.stdout
        self._fd = pipe.fileno()

    def fileno(self) -> int:
        return self._fd

    def read(self, size: int) -> bytes:
        try:
            data = os.read(self._fd, size)
        except OSError as exc:
            if self._closed:
                return b""
            raise TransportError(f"reading from {self.description}: {exc.strerror}") from None
        if not data and not self._closed:
            self._check_exit()
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            if self._closed:
                raise TransportError(f"{self.description} was closed") from None
            self._check_exit()
            raise TransportError(f"writing to {self.description}: {exc.strerror}") from None

    def finish(self) -> None:
        """Close the command's stdin and wait for it: its failure is the migration's failure."""
        if self.outgoing:
            self.process.stdin.close()
        self._check_exit()

    def _check_exit(self) -> None:
        status = self.process.wait()
        if status != 0:
            raise TransportError(f"{self.description} failed ({self._exit_text(status)})")

    def _exit_text(self, status: int) -> str:
        why = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        self._stderr.seek(0)
        lines = self._stderr.read()[-4096:].decode(errors="replace").strip().splitlines()
        return f"{why}: {lines[-1]}" if lines else why

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.process.poll() is None:
            try:  # the whole session: the shell and any pipeline it started
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.process.wait()
        self._stderr.close()


class _CommandListener(MigrationListener):
    """The incoming command, started by listen(); accept() hands out its stdout once."""

    def __init__(self, command: str) -> None:
        self.description = f"exec:{command}"
        self.stream: CommandStream | None = CommandStream(command, outgoing=False)

    def accept(self) -> MigrationStream:
        stream, self.stream = self.stream, None
        if stream is None:
            raise TransportError(f"{self.description}: the command's output was already used")
        return stream

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def address(self) -> dict[str, str]:
        return {"type": "exec", "command": self.description[5:]}


class ExecTransport(MigrationTransport):
    name = "exec"
    description = "a shell command: exec:COMMAND (stream on its stdin / from its stdout)"

    def check_uri(self, uri: str) -> None:
        parse_exec(uri)

    def connect(self, uri: str) -> MigrationStream:
        return CommandStream(parse_exec(uri), outgoing=True)

    def listen(self, uri: str) -> MigrationListener:
        return _CommandListener(parse_exec(uri))


@hookimpl
def arctern_migration_transports() -> list[type[MigrationTransport]]:
    return [ExecTransport]
