"""The MigrationTransport contract: how a migration stream reaches its peer.

A transport plugin serves one URI scheme (``tcp``, ``unix``, ``exec``, ...)
and must implement *both* sides of a migration:

* :meth:`MigrationTransport.connect` (the source, ``migrate URI``) returns a
  :class:`MigrationStream` the engine writes the stream into;
* :meth:`MigrationTransport.listen` (the destination, ``-incoming URI``)
  returns a :class:`MigrationListener` whose :meth:`~MigrationListener.accept`
  gives the stream the engine reads from.

A transport that cannot receive is refused by the registry: a guest that
can be sent somewhere it can never be brought back from is a trap.

Streams are blocking binary file-likes with a ``fileno()``; the engine does
all blocking I/O on a worker thread and the machine's main loop never waits
on them. ``listen`` binds (or starts its command) synchronously, so a bad
address is reported at once; ``accept`` may block and is called on the
worker thread. :meth:`MigrationListener.close` and
:meth:`MigrationStream.close` must be callable from another thread and wake
up a blocked ``accept``/``read``/``write`` (that is how ``migrate_cancel``
and ``quit`` stop a migration at any point).
"""

from __future__ import annotations

import os
import socket
from typing import ClassVar

from arctern.contract import required
from arctern.errors import TransportError


def split_uri(uri: str) -> tuple[str, str]:
    """Split ``"scheme:rest"``; a URI without a scheme is a TransportError."""
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme or not rest:
        raise TransportError(
            f"bad migration URI '{uri}': expected SCHEME:ADDRESS, e.g. tcp:HOST:PORT"
        )
    return scheme, rest


class MigrationStream:
    """One direction-agnostic byte stream between the two sides of a migration.

    Subclasses implement :meth:`read`, :meth:`write`, :meth:`fileno` and
    :meth:`close`. ``has_return_path`` says whether the destination can answer
    on the same stream (sockets can, an ``exec:`` pipe cannot); the engine
    uses it for the ``verify`` capability's verdict.
    """

    has_return_path: ClassVar[bool] = False
    description: str = ""

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` only at end of stream."""
        raise NotImplementedError

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` or raise TransportError."""
        raise NotImplementedError

    def readinto(self, buf: memoryview) -> int:
        """Read up to ``len(buf)`` bytes into ``buf``; 0 only at end of stream."""
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def fileno(self) -> int:
        raise NotImplementedError

    def finish(self) -> None:
        """The writer is done: flush, signal end of data to the peer, report a failed peer.

        Default: nothing beyond :meth:`close`. A command-based stream waits
        for its command here and raises TransportError if it failed.
        """

    def close(self) -> None:
        raise NotImplementedError

    def read_exact_into(self, buf: memoryview) -> int:
        """Fill ``buf``; returns how much was read (less only if the stream ended)."""
        have = 0
        while have < len(buf):
            n = self.readinto(buf[have:])
            if not n:
                break
            have += n
        return have

    def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or fewer only if the stream ended."""
        first = self.read(size)
        if len(first) == size or not first:
            return first
        parts = [first]
        have = len(first)
        while have < size:
            chunk = self.read(size - have)
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def __enter__(self) -> MigrationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SocketStream(MigrationStream):
    """A connected stream socket (tcp or unix) as a MigrationStream."""

    has_return_path = True

    def __init__(self, sock: socket.socket, description: str) -> None:
        sock.setblocking(True)
        self.sock = sock
        self.description = description
        self._closed = False

    def read(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except OSError as exc:
            if self._closed:
                return b""
            raise TransportError(f"migration stream {self.description}: {_reason(exc)}") from None

    def readinto(self, buf: memoryview) -> int:
        try:
            return self.sock.recv_into(buf)
        except OSError as exc:
            if self._closed:
                return 0
            raise TransportError(f"migration stream {self.description}: {_reason(exc)}") from None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            why = "closed" if self._closed else _reason(exc)
            raise TransportError(f"migration stream {self.description}: {why}") from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def finish(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Wakes up a thread blocked in recv/sendall on this socket.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class MigrationListener:
    """The destination's end point, bound (or started) and waiting for the source."""

    description: str = ""

    def accept(self) -> MigrationStream:
        """Block until the source arrives; TransportError if the listener was closed."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def address(self) -> dict[str, str]:
        """QEMU's SocketAddress-like description for query-migrate (``socket-address``)."""
        return {}


class MigrationTransport:
    """Base class of migration transports. ``name`` is the URI scheme it serves."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def check_uri(self, uri: str) -> None:
        """Raise TransportError now if ``uri`` is malformed (``migrate`` answers at once).

        Optional; :meth:`connect` runs later on the migration's worker thread.
        """

    @required
    def connect(self, uri: str) -> MigrationStream:
        """Open the outgoing stream to ``uri`` (``migrate``); TransportError on failure."""
        raise NotImplementedError

    @required
    def listen(self, uri: str) -> MigrationListener:
        """Prepare to receive on ``uri`` (``-incoming``); bind now, accept later."""
        raise NotImplementedError


def _reason(exc: OSError) -> str:
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc)) or type(exc).__name__


__all__ = [
    "MigrationListener",
    "MigrationStream",
    "MigrationTransport",
    "SocketStream",
    "split_uri",
]
