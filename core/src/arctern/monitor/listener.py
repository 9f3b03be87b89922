"""The listening sockets of the monitor's front ends: ``-qmp`` and ``-monitor`` socket specs.

``unix:PATH,server=on,wait=off`` or ``tcp:HOST:PORT,server=on,wait=off`` as
QEMU's socket chardev takes them (``,,`` is a comma inside PATH). With
``wait=on`` (QEMU's default) the process waits for the first client before
the guest starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from typing import Any

from arctern.errors import UsageError
from arctern.qemu_opts import split_commas
from arctern.unix_socket import fits_sun_path, too_long_message

log = logging.getLogger(__name__)


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


def _listen(kind: str, target: Any, spec: str, option: str) -> socket.socket:
    if kind == "unix":
        too_long = too_long_message(target)
        if too_long:
            raise UsageError(f"{option} {spec}: {too_long}")
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
            raise UsageError(f"{option} {spec}: cannot resolve '{host}': {exc.strerror}") from None
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
        raise UsageError(f"{option} {spec}: cannot listen: {exc.strerror or exc}") from None
    return sock


class ServerSocket:
    """A bound, listening socket from a ``-qmp`` or ``-monitor`` spec; removes its file."""

    def __init__(self, spec: str, option: str) -> None:
        kind, target, options = parse_socket_spec(spec, option)
        if options.get("server", "off") != "on":
            raise UsageError(f"{option} {spec}: only server sockets are supported (add server=on)")
        self.spec = spec
        self.wait = options.get("wait", "on") == "on"
        self.path = target if kind == "unix" else None
        self.sock = _listen(kind, target, spec, option)

    def address(self) -> Any:
        return self.sock.getsockname()

    def wait_for_client(self) -> socket.socket | None:
        """With ``wait=on``, block until the first client connects (QEMU does too)."""
        client = None
        if self.wait:
            log.info("%s: waiting for a client", self.spec)
            client = self.sock.accept()[0]
        self.sock.setblocking(False)
        return client

    def accept(self) -> socket.socket | None:
        """A new client, or None if none is waiting."""
        try:
            return self.sock.accept()[0]
        except BlockingIOError:
            return None

    def close(self) -> None:
        self.sock.close()
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
