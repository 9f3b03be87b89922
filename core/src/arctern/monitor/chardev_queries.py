"""query-chardev, query-chardev-backends and ``info chardev`` as qemu-system-i386 7.2 answers.

Labels are QEMU's: the ``-chardev`` id, ``serialN`` for ``-serial``, ``ID-base``
for what a multiplexer (``mux=on``) sits on, and ``compat_monitorN`` for the
sockets and terminals of ``-qmp`` and ``-monitor``. Filenames are QEMU's:
the backend's type name (``null``, ``file``, ``stdio``, ``mux``), or a
socket's address, ``disconnected:`` while no peer is there and
``HOST:PORT <-> PEER:PORT`` for a connected TCP one. QEMU lists them in its
hash table's order; Arctern in the order they were created.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from arctern.machine.chardev import SocketChardev, SocketServerChardev
from arctern.machine.mux import MuxChardev
from arctern.monitor.commands import command
from arctern.monitor.listener import parse_socket_spec

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor

#: The backends ``-chardev`` takes (``mux`` through ``mux=on``), as query-chardev-backends.
BACKENDS = ("null", "stdio", "file", "socket", "mux")


def socket_filename(address: str, conn: socket.socket | None, *, listen: bool) -> str:
    """QEMU's filename of a socket chardev at ``address`` (``unix:P`` or ``tcp:H:P``)."""
    server = ",server=on" if listen else ""
    if conn is None:
        return f"disconnected:{address}{server}"
    if conn.family == socket.AF_UNIX:
        return f"{address}{server}"
    return f"tcp:{_host_port(conn.getsockname())}{server} <-> {_host_port(conn.getpeername())}"


def _host_port(sockaddr: Any) -> str:
    host, port = socket.getnameinfo(sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_address(spec: str, option: str) -> str:
    """``unix:PATH`` or ``tcp:HOST:PORT`` of a ``-qmp``/``-monitor`` socket spec."""
    kind, target, _options = parse_socket_spec(spec, option)
    return f"unix:{target}" if kind == "unix" else f"tcp:{target[0]}:{target[1]}"


def _backend_filename(chardev: Any) -> str:
    if not isinstance(chardev, SocketChardev):
        return chardev.name
    # SocketChardev keeps its peer private; its connection state is what QEMU shows
    client = getattr(chardev, "_client", None)
    listen = isinstance(chardev, SocketServerChardev)
    return socket_filename(chardev.address.text, client, listen=listen)


def chardev_infos(mon: Monitor) -> list[dict[str, Any]]:
    """Every character device of the machine and of the monitor, QEMU's label and filename."""
    infos = []

    def add(label: str, filename: str, frontend_open: bool) -> None:
        infos.append({"frontend-open": frontend_open, "filename": filename, "label": label})

    for label, chardev in mon.machine.chardevs.items():
        if isinstance(chardev, MuxChardev):
            add(f"{label}-base", _backend_filename(chardev.backend), True)
            add(label, "mux", bool(chardev.frontends))
        else:
            add(label, _backend_filename(chardev), chardev.in_use)
    for front_end in mon.front_ends:
        label = getattr(front_end, "label", None)
        if label is not None and label not in mon.machine.chardevs:
            add(label, front_end.filename(), True)
    return infos


@command("query-chardev")
def query_chardev(mon: Monitor, args: dict) -> list:
    return chardev_infos(mon)


@command("query-chardev-backends")
def query_chardev_backends(mon: Monitor, args: dict) -> list:
    return [{"name": name} for name in BACKENDS]
