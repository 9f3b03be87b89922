"""HMP on a socket: ``-monitor unix:PATH,server=on,wait=off`` (or ``tcp:HOST:PORT,...``).

As QEMU's socket chardev, one client at a time: the next one waits in the
listen queue until the current one disconnects; each gets the banner and a
prompt, and QEMU's line editor (:class:`~arctern.monitor.hmp_terminal.HMPTerminal`,
which echoes what the client types); the command history outlives a client.
A client that stops reading cannot hold the guest for long: a reply it does
not take within :data:`SEND_TIMEOUT` seconds drops it.
"""

from __future__ import annotations

import logging
import select
import socket
from typing import Any

from arctern.machine.chardev import Chardev
from arctern.monitor.chardev_queries import server_address, socket_filename
from arctern.monitor.hmp_terminal import HMPTerminal
from arctern.monitor.listener import ServerSocket

log = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0
_READ_SIZE = 4096


class _ClientChardev(Chardev):
    """The connected client as the terminal's chardev; remembers a client that went away."""

    name = "hmp-client"

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.sock.sendall(data)
        except OSError as exc:  # gone, or not reading (timeout)
            log.info("HMP client dropped: %s", exc)
            self.broken = True

    def read(self) -> None:
        """Hand what the client sent to the terminal (called when select() says readable)."""
        try:
            data = self.sock.recv(_READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self.broken = True
        self._deliver(data)


class HMPServer:
    """A listening HMP socket and the console of its current client."""

    def __init__(self, monitor: Any, spec: str, label: str = "") -> None:
        self.monitor = monitor
        #: The chardev name QEMU gives it (compat_monitorN), for query-chardev.
        self.label = label
        self.listener = ServerSocket(spec, "-monitor")
        self.client: _ClientChardev | None = None
        self.terminal: HMPTerminal | None = None
        self.history: list[str] = []
        first = self.listener.wait_for_client()
        if first is not None:
            self._attach(first)

    def address(self) -> Any:
        return self.listener.address()

    def filename(self) -> str:
        """QEMU's query-chardev filename."""
        conn = self.client.sock if self.client is not None else None
        return socket_filename(server_address(self.listener.spec, "-monitor"), conn, listen=True)

    def _attach(self, sock: socket.socket) -> None:
        sock.settimeout(SEND_TIMEOUT)  # reads happen only when select() says so
        self.client = _ClientChardev(sock)
        self.terminal = HMPTerminal(self.monitor, self.client, history=self.history)

    def _detach(self) -> None:
        if self.terminal is not None:
            self.terminal.close()
        if self.client is not None:
            self.client.sock.close()
        self.client = self.terminal = None

    def fds(self) -> list[int]:
        if self.client is None:
            return [self.listener.sock.fileno()]
        return [self.client.sock.fileno()]

    def poll(self) -> None:
        if self.client is None:
            sock = self.listener.accept()
            if sock is not None:
                self._attach(sock)
            return
        self.terminal.poll()
        if _readable(self.client.sock):
            self.client.read()
        if self.client.broken:
            self._detach()

    def close(self) -> None:
        self._detach()
        self.listener.close()


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])
