"""The ``tcp:HOST:PORT`` and ``unix:PATH`` migration transports.

``tcp:`` takes IPv4 and IPv6 addresses (``tcp:[::1]:4444``); the incoming
side binds exactly the address given (an IPv6 socket is V6ONLY), and
``tcp::PORT`` listens on every address, as in QEMU. ``unix:`` removes a
stale socket file before binding and removes its own on close.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading

from arctern.errors import TransportError
from arctern.hookspecs import hookimpl
from arctern.migration.transport import (
    MigrationListener,
    MigrationStream,
    MigrationTransport,
    SocketStream,
    split_uri,
)
from arctern.unix_socket import too_long_message

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
ACCEPT_POLL = 0.2


def parse_tcp(uri: str) -> tuple[str, int]:
    """``tcp:HOST:PORT`` -> (host, port); brackets around an IPv6 host are removed."""
    _scheme, rest = split_uri(uri)
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise TransportError(f"bad migration URI '{uri}': expected tcp:HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise TransportError(f"bad migration URI '{uri}': write an IPv6 host as [ADDRESS]")
    return host, int(port_text)


def parse_unix(uri: str) -> str:
    """``unix:PATH`` -> PATH, taken verbatim as QEMU does (a ``,,`` stays two commas)."""
    _scheme, path = split_uri(uri)
    too_long = too_long_message(path)
    if too_long:
        raise TransportError(too_long)
    return path


class _SocketListener(MigrationListener):
    """A bound, listening socket; accept polls so close() from another thread ends it."""

    def __init__(self, sock: socket.socket, description: str) -> None:
        self.sock = sock
        self.description = description
        self._closed = threading.Event()
        sock.settimeout(ACCEPT_POLL)

    def accept(self) -> MigrationStream:
        while not self._closed.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closed.is_set():
                    break
                raise TransportError(f"accept on {self.description}: {exc.strerror}") from None
            log.debug("incoming migration from %s on %s", peer or "peer", self.description)
            return SocketStream(conn, f"from {peer or 'peer'} on {self.description}")
        raise TransportError(f"listener {self.description} was closed")

    def close(self) -> None:
        self._closed.set()
        self.sock.close()


class _TcpListener(_SocketListener):
    def address(self) -> dict[str, str]:
        host, port = self.sock.getsockname()[:2]
        return {"type": "inet", "host": host, "port": str(port)}


class _UnixListener(_SocketListener):
    def __init__(self, sock: socket.socket, path: str) -> None:
        super().__init__(sock, f"unix:{path}")
        self.path = path
        self._stat = os.stat(path)

    def address(self) -> dict[str, str]:
        return {"type": "unix", "path": self.path}

    def close(self) -> None:
        super().close()
        try:
            if os.stat(self.path).st_ino == self._stat.st_ino:
                os.unlink(self.path)
        except OSError:
            pass


class TcpTransport(MigrationTransport):
    name = "tcp"
    description = "TCP over IPv4 or IPv6: tcp:HOST:PORT"

    def check_uri(self, uri: str) -> None:
        parse_tcp(uri)

    def connect(self, uri: str) -> MigrationStream:
        host, port = parse_tcp(uri)
        try:
            sock = socket.create_connection((host or "localhost", port), timeout=CONNECT_TIMEOUT)
        except socket.gaierror as exc:
            raise TransportError(f"cannot resolve '{host}' of {uri}: {exc.strerror}") from None
        except TimeoutError:
            raise TransportError(f"cannot connect to {uri}: timed out") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {uri}: {exc.strerror}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketStream(sock, uri)

    def listen(self, uri: str) -> MigrationListener:
        host, port = parse_tcp(uri)
        try:
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise TransportError(f"cannot resolve '{host}' of {uri}: {exc.strerror}") from None
        # tcp::PORT listens everywhere: prefer the dual-stack IPv6 wildcard, as QEMU does.
        if not host:
            infos.sort(key=lambda info: info[0] != socket.AF_INET6)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if host else 0)
            sock.bind(address)
            sock.listen(1)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot listen on {uri}: {exc.strerror}") from None
        return _TcpListener(sock, uri)


class UnixTransport(MigrationTransport):
    name = "unix"
    description = "Unix domain stream socket: unix:PATH"

    def check_uri(self, uri: str) -> None:
        parse_unix(uri)

    def connect(self, uri: str) -> MigrationStream:
        path = parse_unix(uri)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot connect to {uri}: {exc.strerror}") from None
        return SocketStream(sock, uri)

    def listen(self, uri: str) -> MigrationListener:
        path = parse_unix(uri)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TransportError(f"cannot listen on {uri}: {exc.strerror}") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(1)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot listen on {uri}: {exc.strerror}") from None
        return _UnixListener(sock, path)


@hookimpl
def arctern_migration_transports() -> list[type[MigrationTransport]]:
    return [TcpTransport, UnixTransport]
