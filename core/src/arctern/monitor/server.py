"""The QMP server: JSON over unix or tcp sockets, QEMU's greeting and negotiation.

Non-blocking throughout: :meth:`QMPServer.poll` accepts, reads and writes
whatever is ready and returns, so a silent, slow or hostile client never
stops the guest. A malformed or oversized message gets a GenericError reply
and the connection goes on; a client that stops reading its replies is
dropped once its backlog passes a limit.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
from typing import Any

from arctern import __version__
from arctern.monitor.chardev_queries import server_address, socket_filename
from arctern.monitor.commands import CommandNotFound, QMPError, query_version
from arctern.monitor.jsonstream import JSONSplitter
from arctern.monitor.listener import ServerSocket

log = logging.getLogger(__name__)

#: What the greeting offers, as QEMU 7.2 does on its sockets.
CAPABILITIES = ("oob",)
MAX_MESSAGE = 1 << 20
MAX_BACKLOG = 16 << 20
READ_SIZE = 65536


def _negotiate(args: dict[str, Any]) -> bool:
    """``qmp_capabilities`` arguments -> whether out-of-band execution is enabled."""
    enable = args.get("enable", [])
    if not isinstance(enable, list):
        raise QMPError("Invalid parameter type for 'enable', expected: array")
    for capability in enable:
        if capability != "oob":
            raise QMPError(f"Parameter 'null' does not accept value '{capability}'")
    return bool(enable)


class QMPConnection:
    """One client: its input splitter, negotiation state and pending output."""

    def __init__(self, server: QMPServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.splitter = JSONSplitter(MAX_MESSAGE)
        self.negotiated = False
        self.oob = False  # the client enabled the "oob" capability
        self.out = bytearray()
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        self.out += json.dumps(message).encode() + b"\r\n"
        if len(self.out) > MAX_BACKLOG:
            log.warning("QMP client does not read its replies; dropping it")
            self.server.drop(self)
            return
        self.flush()

    def flush(self) -> None:
        while self.out and not self.closed:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                break
            except OSError:
                self.server.drop(self)
                return
            del self.out[:sent]
        self.server.want_write(self, bool(self.out))

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.server.drop(self)
            return
        messages, error = self.splitter.feed(data)
        for raw in messages:
            self.handle(raw)
        if error:
            self.send({"error": {"class": "GenericError", "desc": error}})

    def handle(self, raw: bytes) -> None:
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self.send({"error": {"class": "GenericError", "desc": f"JSON parse error, {exc}"}})
            return
        reply_id = request.get("id") if isinstance(request, dict) else None
        try:
            result = self.dispatch(request)
        except QMPError as exc:
            reply: dict[str, Any] = {"error": {"class": exc.error_class, "desc": str(exc)}}
        else:
            reply = {"return": result}
        if isinstance(request, dict) and "id" in request:
            reply["id"] = reply_id
        self.send(reply)

    def dispatch(self, request: Any) -> Any:
        if not isinstance(request, dict):
            raise QMPError("QMP input must be a JSON object")
        allowed = ("execute", "arguments", "id") + (("exec-oob",) if self.oob else ())
        for key in request:
            if key not in allowed:
                raise QMPError(f"QMP input member '{key}' is unexpected")
        out_of_band = "exec-oob" in request
        if out_of_band and "execute" in request:
            raise QMPError("QMP input member 'execute' clashes with 'exec-oob'")
        member = "exec-oob" if out_of_band else "execute"
        name = request.get(member)
        if not isinstance(name, str):
            raise QMPError(f"QMP input member '{member}' must be a string")
        args = request.get("arguments", {})
        if not isinstance(args, dict):
            raise QMPError("QMP input member 'arguments' must be an object")
        if not self.negotiated:
            if name != "qmp_capabilities":
                raise CommandNotFound("Expecting capabilities negotiation with 'qmp_capabilities'")
            self.oob = _negotiate(args)
            self.negotiated = True
            return {}
        if out_of_band:
            # QEMU runs a few commands out of band (migrate-pause, migrate-recover), none
            # of which Arctern has: an existing command is refused as QEMU refuses its own.
            self.server.monitor.check_command(name)
            raise QMPError(f"The command {name} does not support OOB")
        return self.server.monitor.execute(name, args)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class QMPServer:
    """A listening QMP socket and its clients, served from the main loop."""

    def __init__(self, monitor: Any, spec: str, label: str = "") -> None:
        self.monitor = monitor
        self.spec = spec
        #: The chardev name QEMU gives it (compat_monitorN), for query-chardev.
        self.label = label
        self.listener = ServerSocket(spec, "-qmp")
        self.sock = self.listener.sock
        self.selector = selectors.DefaultSelector()
        self.connections: list[QMPConnection] = []
        monitor.sinks.append(self.broadcast)
        first = self.listener.wait_for_client()
        if first is not None:
            self._accept(first)
        self.selector.register(self.sock, selectors.EVENT_READ, None)

    def address(self) -> Any:
        return self.listener.address()

    def filename(self) -> str:
        """QEMU's query-chardev filename (the first client is the one QEMU would have)."""
        conn = self.connections[0].sock if self.connections else None
        return socket_filename(server_address(self.spec, "-qmp"), conn, listen=True)

    def _accept(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        conn = QMPConnection(self, sock)
        self.connections.append(conn)
        self.selector.register(sock, selectors.EVENT_READ, conn)
        version = query_version(self.monitor, {})
        greeting = {"QMP": {"version": version, "capabilities": list(CAPABILITIES)}}
        log.debug("QMP client connected (Arctern %s)", __version__)
        conn.send(greeting)

    def want_write(self, conn: QMPConnection, wanted: bool) -> None:
        if conn.closed:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        self.selector.modify(conn.sock, events, conn)

    def drop(self, conn: QMPConnection) -> None:
        if conn.closed:
            return
        self.selector.unregister(conn.sock)
        self.connections.remove(conn)
        conn.close()

    def broadcast(self, message: dict[str, Any]) -> None:
        for conn in list(self.connections):
            if conn.negotiated:
                conn.send(message)

    def fds(self) -> list[int]:
        return [self.sock.fileno()] + [c.sock.fileno() for c in self.connections]

    def poll(self, timeout: float = 0) -> None:
        for key, events in self.selector.select(timeout):
            conn = key.data
            if conn is None:
                sock = self.listener.accept()
                if sock is not None:
                    self._accept(sock)
                continue
            if events & selectors.EVENT_WRITE:
                conn.flush()
            if events & selectors.EVENT_READ and not conn.closed:
                conn.on_readable()

    def close(self) -> None:
        """Send what is still queued (the reply to quit, SHUTDOWN) for up to a second, close."""
        for conn in list(self.connections):
            if conn.out:
                conn.sock.settimeout(1.0)
                try:
                    conn.sock.sendall(conn.out)
                except OSError:
                    pass
            self.drop(conn)
        if self.broadcast in self.monitor.sinks:
            self.monitor.sinks.remove(self.broadcast)
        self.selector.close()
        self.listener.close()
