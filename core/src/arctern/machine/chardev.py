"""Character backends for serial ports (``-serial``, ``-chardev``) and the monitor.

:func:`open_chardev` understands QEMU's ``-serial`` spellings: ``stdio``,
``mon:SPEC`` (SPEC shared with the HMP monitor through :mod:`arctern.machine.mux`,
with QEMU's Ctrl-A escapes: C-a c switches, C-a x quits), ``file:PATH``,
``unix:PATH`` and ``tcp:HOST:PORT`` (connect to a listening peer),
``unix:PATH,server[=on][,wait=off]`` and ``tcp:HOST:PORT,server...`` (listen),
``null`` and ``none`` (no backend at all: it returns None and the machine
creates no device for it).

A device writes guest output with :meth:`Chardev.write` and receives input
through the callback given to :meth:`Chardev.set_receiver`. Input arrives
only when the main loop calls :meth:`Chardev.poll` between CPU slices (or
wakes up on one of :meth:`Chardev.wait_fds` while the guest idles), so a
device never sees a call from another thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass

from arctern.errors import MachineError
from arctern.qemu_opts import parse_opts
from arctern.unix_socket import too_long_message

log = logging.getLogger(__name__)

Receiver = Callable[[bytes], None]
_READ_CHUNK = 4096


class Chardev:
    """A character backend. Subclasses implement the transport; this class is the null one."""

    name = "null"

    def __init__(self) -> None:
        self._receiver: Receiver | None = None

    def write(self, data: bytes) -> None:
        """Send guest output; a backend with nowhere to send it drops it (as QEMU does)."""

    def set_receiver(self, callback: Receiver | None) -> None:
        """``callback(data)`` receives input for the guest."""
        self._receiver = callback

    @property
    def in_use(self) -> bool:
        """A frontend (a device, a monitor) takes this backend's input: no second one may."""
        return self._receiver is not None

    def wait_fds(self) -> list[int]:
        """File descriptors whose readability means :meth:`poll` has work."""
        return []

    def set_break_handler(self, callback: Callable[[], None] | None) -> None:
        """``callback()`` takes a break condition; only a multiplexer sends one (C-a b)."""

    def set_quit_handler(self, callback: Callable[[], None]) -> None:
        """What a user's quit request on this backend does (C-a x on a multiplexer)."""

    def poll(self) -> None:
        """Take pending input (non-blocking) and hand it to the receiver."""

    def close(self) -> None:
        """Release the backend; closing twice is harmless."""

    def _deliver(self, data: bytes) -> None:
        if data and self._receiver is not None:
            self._receiver(data)


class MemoryChardev(Chardev):
    """A backend in Python: guest output accumulates in ``output``; :meth:`feed` types input.

    This is what the Python API uses to read a guest's serial output.
    """

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.output = bytearray()
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self.output += data

    def feed(self, data: bytes) -> None:
        """Queue input for the guest; delivered at the next :meth:`poll`."""
        self._pending += data

    def poll(self) -> None:
        if self._pending and self._receiver is not None:
            data, self._pending = bytes(self._pending), bytearray()
            self._deliver(data)


class FileChardev(Chardev):
    """``file:PATH``: guest output goes to a file (truncated at open); no input."""

    name = "file"

    def __init__(self, path: str) -> None:
        super().__init__()
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as exc:
            raise MachineError(f"Could not open '{path}': {exc.strerror}") from None
        self.path = path

    def write(self, data: bytes) -> None:
        if self._fd is not None:
            _write_all(self._fd, data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StdioChardev(Chardev):
    """``stdio``: output to stdout, input from stdin (a terminal is put in raw, no-echo mode)."""

    name = "stdio"

    def __init__(self) -> None:
        super().__init__()
        self._in = _fileno(sys.stdin)
        self._out = _fileno(sys.stdout)
        self._saved_tty: list | None = None
        self._eof = False
        if self._in >= 0 and os.isatty(self._in):
            self._saved_tty = termios.tcgetattr(self._in)
            raw = termios.tcgetattr(self._in)
            raw[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)  # keep ISIG: ^C stops us
            raw[0] &= ~(termios.ICRNL | termios.IXON)
            raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
            termios.tcsetattr(self._in, termios.TCSANOW, raw)

    def write(self, data: bytes) -> None:
        if self._out < 0:  # stdout replaced by a Python object (embedding, tests)
            sys.stdout.buffer.write(data)
            return
        with contextlib.suppress(BrokenPipeError):
            _write_all(self._out, data)

    def wait_fds(self) -> list[int]:
        return [] if self._eof or self._in < 0 or self._receiver is None else [self._in]

    def poll(self) -> None:
        if self._eof or self._in < 0 or self._receiver is None or not _readable(self._in):
            return
        try:
            data = os.read(self._in, _READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self._eof = True  # stdin closed: stop polling it, keep writing output
            return
        self._deliver(data)

    def close(self) -> None:
        if self._saved_tty is not None:
            termios.tcsetattr(self._in, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None


@dataclass(frozen=True)
class SocketAddress:
    """Where a socket backend connects or listens: a unix path, or a TCP host and port."""

    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def text(self) -> str:
        return f"unix:{self.path}" if self.path else f"tcp:{self.host}:{self.port}"

    def candidates(self, passive: bool) -> list[tuple[int, object]]:
        """(family, sockaddr) to try, in order."""
        if self.path:
            too_long = too_long_message(self.path)
            if too_long:
                raise MachineError(too_long)
            return [(socket.AF_UNIX, self.path)]
        flags = socket.AI_PASSIVE if passive else 0
        try:
            infos = socket.getaddrinfo(
                self.host or None, self.port, type=socket.SOCK_STREAM, flags=flags
            )
        except socket.gaierror as exc:
            raise MachineError(f"address resolution failed for {self.text}: {exc}") from None
        return [(family, sockaddr) for family, _t, _p, _c, sockaddr in infos]


class SocketChardev(Chardev):
    """``unix:PATH`` or ``tcp:HOST:PORT``: a connected stream socket (a client).

    Output while no peer is connected is dropped, as QEMU drops it.
    """

    name = "socket"

    def __init__(self, address: SocketAddress) -> None:
        super().__init__()
        self.address = address
        self._client: socket.socket | None = None

    @classmethod
    def connect(cls, address: SocketAddress) -> SocketChardev:
        chardev = cls(address)
        error: OSError | None = None
        for family, sockaddr in address.candidates(passive=False):
            client = socket.socket(family, socket.SOCK_STREAM)
            try:
                client.connect(sockaddr)
            except OSError as exc:
                client.close()
                error = exc
                continue
            client.setblocking(False)
            chardev._client = client
            return chardev
        where = address.path or f"{address.host}:{address.port}"
        reason = (error.strerror or str(error)) if error is not None else "no address"
        raise MachineError(f"Failed to connect to '{where}': {reason}")

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def write(self, data: bytes) -> None:
        if self._client is None:
            self.poll()
        if self._client is None:
            return
        view = memoryview(data)
        while view:
            try:
                sent = self._client.send(view)
            except BlockingIOError:
                select.select([], [self._client], [], 1.0)
                continue
            except OSError:
                self._drop_client()
                return
            view = view[sent:]

    def wait_fds(self) -> list[int]:
        return [self._client.fileno()] if self._client is not None else []

    def poll(self) -> None:
        if self._client is None or not _readable(self._client.fileno()):
            return
        try:
            data = self._client.recv(_READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        self._deliver(data)

    def close(self) -> None:
        self._drop_client()


class SocketServerChardev(SocketChardev):
    """``unix:PATH,server`` or ``tcp:HOST:PORT,server``: listens; one client at a time.

    With ``wait=on`` (QEMU's default for a server) opening blocks until the
    first client connects. A client that leaves makes room for the next one.
    """

    def __init__(self, address: SocketAddress, *, wait: bool = True) -> None:
        super().__init__(address)
        self._listener = self._listen(address)
        if wait:
            log.info("info: waiting for connection on: disconnected:%s,server=on", address.text)
            self._accept()
        self._listener.setblocking(False)

    @staticmethod
    def _listen(address: SocketAddress) -> socket.socket:
        if address.path and os.path.exists(address.path) and _is_socket(address.path):
            os.unlink(address.path)  # a stale socket of an earlier run
        error: OSError | None = None
        for family, sockaddr in address.candidates(passive=True):
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                if family != socket.AF_UNIX:
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(sockaddr)
                listener.listen(1)
            except OSError as exc:
                listener.close()
                error = exc
                continue
            return listener
        where = address.path or f"{address.host}:{address.port}"
        reason = (error.strerror or str(error)) if error is not None else "no address"
        raise MachineError(f"Failed to bind socket to {where}: {reason}")

    @property
    def port(self) -> int:
        """The TCP port listened on (useful with port 0: the system picks one)."""
        return self._listener.getsockname()[1]

    def _accept(self) -> None:
        try:
            client, _addr = self._listener.accept()
        except BlockingIOError:
            return
        if self._client is not None:  # busy: refuse the newcomer, as QEMU does
            client.close()
            return
        client.setblocking(False)
        self._client = client

    def wait_fds(self) -> list[int]:
        listening = [self._listener.fileno()] if self._listener.fileno() >= 0 else []
        return listening + super().wait_fds()

    def poll(self) -> None:
        if self._listener.fileno() < 0:
            return
        if _readable(self._listener.fileno()):
            self._accept()
        super().poll()

    def close(self) -> None:
        super().close()
        if self._listener.fileno() >= 0:
            self._listener.close()
            if self.address.path:
                with contextlib.suppress(OSError):
                    os.unlink(self.address.path)


def open_chardev(spec: str, label: str = "") -> Chardev | None:
    """Open a backend from QEMU's ``-serial`` spelling; None for ``none``.

    ``mon:SPEC`` is SPEC behind a multiplexer that also carries an HMP monitor
    (``label`` names it in errors).
    """
    kind, sep, rest = spec.partition(":")
    if spec == "none":
        return None
    if spec == "null":
        return Chardev()
    if spec == "stdio":
        return StdioChardev()
    if kind == "mon" and sep and not rest.startswith("mon:"):
        from arctern.machine.mux import MuxChardev  # mux.py builds on this module

        backend = open_chardev(rest, label) if rest else None
        if backend is None:
            raise MachineError(f"'{rest}' is not a valid char driver")
        return MuxChardev(backend, label=label, monitor=True)
    if kind == "file" and sep and rest:
        return FileChardev(rest)
    if kind in ("unix", "tcp") and sep and rest:
        options = parse_opts(rest, "address")
        address = _socket_address(kind, options.get("address", ""), spec)
        if not _on(options.get("server", "off"), spec):
            return SocketChardev.connect(address)
        return SocketServerChardev(address, wait=_on(options.get("wait", "on"), spec))
    raise MachineError(f"'{spec}' is not a valid char driver")


def _socket_address(kind: str, text: str, spec: str) -> SocketAddress:
    if kind == "unix":
        if not text:
            raise MachineError(f"'{spec}' is not a valid char driver")
        return SocketAddress(path=text)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise MachineError(f"'{spec}': expected tcp:HOST:PORT")
    return SocketAddress(host=host.strip("[]"), port=int(port))


def _on(value: str, spec: str) -> bool:
    if value in ("on", "yes", "true"):
        return True
    if value in ("off", "no", "false"):
        return False
    raise MachineError(f"'{spec}': '{value}' is not 'on' or 'off'")


def _fileno(stream: object) -> int:
    """The stream's file descriptor, or -1 when it has none (replaced by a Python object)."""
    try:
        return stream.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return -1


def _readable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def _is_socket(path: str) -> bool:
    return stat.S_ISSOCK(os.stat(path).st_mode)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        view = view[written:]
