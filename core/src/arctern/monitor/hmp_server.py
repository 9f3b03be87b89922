"""HMP on a socket: ``-monitor unix:PATH,server=on,wait=off`` (or ``tcp:HOST:PORT,...``).

As QEMU's socket chardev, one client at a time: the next one waits in the
listen queue until the current one disconnects; each gets the banner and a
prompt. A client that stops reading cannot hold the guest for long: a reply
it does not take within :data:`SEND_TIMEOUT` seconds drops it.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from arctern.monitor.hmp import HMPConsole
from arctern.monitor.listener import ServerSocket

log = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0


class _SocketWriter:
    """The console's output file on a client socket; remembers a client that went away."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.broken = False

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.sock.sendall(text.encode())
        except OSError as exc:  # gone, or not reading (timeout)
            log.info("HMP client dropped: %s", exc)
            self.broken = True

    def flush(self) -> None:
        """Nothing buffered: write() sends at once."""


class HMPServer:
    """A listening HMP socket and the console of its current client."""

    def __init__(self, monitor: Any, spec: str) -> None:
        self.monitor = monitor
        self.listener = ServerSocket(spec, "-monitor")
        self.client: socket.socket | None = None
        self.writer: _SocketWriter | None = None
        self.console: HMPConsole | None = None
        first = self.listener.wait_for_client()
        if first is not None:
            self._attach(first)

    def address(self) -> Any:
        return self.listener.address()

    def _attach(self, sock: socket.socket) -> None:
        sock.settimeout(SEND_TIMEOUT)  # reads happen only when select() says so
        self.client = sock
        self.writer = _SocketWriter(sock)
        self.console = HMPConsole(self.monitor, sock, self.writer)

    def _detach(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = self.writer = self.console = None

    def fds(self) -> list[int]:
        if self.console is None:
            return [self.listener.sock.fileno()]
        return self.console.fds()

    def poll(self) -> None:
        if self.console is None:
            sock = self.listener.accept()
            if sock is not None:
                self._attach(sock)
            return
        self.console.poll()
        if self.console.eof or self.writer.broken:
            self._detach()

    def close(self) -> None:
        self._detach()
        self.listener.close()
