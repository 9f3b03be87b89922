"""The QMP server: JSON over unix or tcp sockets, QEMU's greeting and negotiation.

Non-blocking throughout: :meth:`QMPServer.poll` accepts, reads and writes
whatever is ready and returns, so a silent, slow or hostile client never
stops the guest. A malformed or oversized message gets a GenericError reply
and the connection goes on; a client that stops reading its replies is
dropped once its backlog passes a limit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
from typing import Any

from arctern import __version__
from arctern.errors import UsageError
from arctern.monitor.commands import CommandNotFound, QMPError, query_version
from arctern.monitor.jsonstream import JSONSplitter
from arctern.qemu_opts import split_commas
from arctern.unix_socket import fits_sun_path, too_long_message

log = logging.getLogger(__name__)

#: What the greeting offers, as QEMU 7.2 does on its sockets.
CAPABILITIES = ("oob",)
MAX_MESSAGE = 1 << 20
MAX_BACKLOG = 16 << 20
READ_SIZE = 65536


def parse_socket_spec(spec: str, option: str = "-qmp") -> tuple[str, Any, dict[str, str]]:
    """``unix:PATH,server=on,wait=off`` -> ("unix", PATH, options); tcp gives (host, port).

    QEMU's option syntax: ``,,`` is a comma inside PATH (``unix:/tmp/a,,b`` is ``/tmp/a,b``).
    """
    address, *rest = split_commas(spec)
    options = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if key in ("server", "wait", "nowait", "nodelay") and not sep:
            value = "off" if key == "nowait" else "on"
            key = "wait" if key == "nowait" else key
        if key not in ("server", "wait", "nodelay") or value not in ("on", "off"):
            raise UsageError(f"{option} {spec}: bad option '{item}'")
        options[key] = value
    kind, sep, target = address.partition(":")
    if kind == "unix" and sep and target:
        return "unix", target, options
    if kind == "tcp" and sep:
        host, sep, port = target.rpartition(":")
        if sep and port.isdigit() and int(port) < 65536:
            return "tcp", (host.strip("[]"), int(port)), options
    raise UsageError(f"{option} {spec}: expected unix:PATH or tcp:HOST:PORT")


def _listen(kind: str, target: Any, spec: str) -> socket.socket:
    if kind == "unix":
        too_long = too_long_message(target)
        if too_long:
            raise UsageError(f"-qmp {spec}: {too_long}")
        try:
            if stat.S_ISSOCK(os.stat(target).st_mode):
                os.unlink(target)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound and listening under a temporary name, then renamed: a client that
        # sees the socket file can connect at once. A path close to the sun_path
        # limit leaves no room for the suffix and is bound directly.
        address: Any = f"{target}.{os.getpid()}.tmp"
        if not fits_sun_path(address):
            address = target
    else:
        host, port = target
        try:
            family, kind_, proto, _name, address = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise UsageError(f"-qmp {spec}: cannot resolve '{host}': {exc.strerror}") from None
        sock = socket.socket(family, kind_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(4)
        if kind == "unix" and address != target:
            os.rename(address, target)
    except OSError as exc:
        sock.close()
        if kind == "unix" and address != target:
            with contextlib.suppress(OSError):
                os.unlink(address)
        raise UsageError(f"-qmp {spec}: cannot listen: {exc.strerror or exc}") from None
    return sock


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

    def __init__(self, monitor: Any, spec: str) -> None:
        self.monitor = monitor
        self.spec = spec
        kind, target, options = parse_socket_spec(spec)
        if options.get("server", "off") != "on":
            raise UsageError(f"-qmp {spec}: only server sockets are supported (add server=on)")
        self.path = target if kind == "unix" else None
        self.sock = _listen(kind, target, spec)
        self.selector = selectors.DefaultSelector()
        self.connections: list[QMPConnection] = []
        monitor.sinks.append(self.broadcast)
        if options.get("wait", "on") == "on":
            log.info("QMP: waiting for a client on %s", spec)
            self._accept(self.sock.accept()[0])
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, None)

    def address(self) -> Any:
        return self.sock.getsockname()

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
                try:
                    sock, _peer = self.sock.accept()
                except BlockingIOError:
                    continue
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
        self.sock.close()
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
