"""Conformance suite for migration transports (the MigrationTransport contract).

Subclass :class:`MigrationTransportConformance` in a test module of your
transport's distribution, name the class ``Test...``, set ``scheme`` and say
where the two sides meet::

    from arctern.testing.migration import MigrationTransportConformance

    class TestMyScheme(MigrationTransportConformance):
        scheme = "myscheme"

        def endpoints(self, tmp_path):
            return "myscheme:/some/where", "myscheme:/some/where"

Every test uses the transport through the installed plugin registry, as the
migration engine does. A transport whose destination can only start after
the source has finished (a file in between, like ``exec:``) sets
``sequential = True``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from arctern.contract import missing_hooks
from arctern.errors import TransportError
from arctern.migration.transport import MigrationListener, MigrationTransport
from arctern.plugins import Registry

PAYLOAD = os.urandom(3 << 20) + bytes(1 << 20) + b"tail"


class MigrationTransportConformance:
    """Base class of the suite; subclasses set ``scheme`` and implement :meth:`endpoints`."""

    scheme: ClassVar[str] = ""
    #: The destination reads only what the source wrote and finished (a file in between).
    sequential: ClassVar[bool] = False

    def endpoints(self, tmp_path: Path) -> tuple[str, str]:
        """(URI the destination listens on, URI the source connects to)."""
        raise NotImplementedError

    def connect_uri(self, listener: MigrationListener, connect: str) -> str:
        """The URI to connect to once ``listener`` is bound (override for ``:0`` ports)."""
        return connect

    def unreachable(self, tmp_path: Path) -> str:
        """A URI of this scheme nothing answers on (connect or finish must fail)."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _arctern_transport(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        registry = Registry().discover(["migration"])
        self.transport_class = registry.transport(self.scheme)
        self.transport: MigrationTransport = self.transport_class()

    def _send(self, uri: str, data: bytes) -> None:
        with self.transport.connect(uri) as stream:
            stream.write(data)
            stream.finish()

    # --- the contract ----------------------------------------------------------

    def test_registered_under_its_scheme_with_both_sides(self):
        assert self.transport_class.name == self.scheme
        assert missing_hooks(self.transport_class, MigrationTransport) == []

    def test_malformed_uri_is_a_transport_error(self):
        with pytest.raises(TransportError, match="migration URI"):
            self.transport.check_uri(f"{self.scheme}:")

    def test_stream_round_trip(self):
        listen, connect = self.endpoints(self.tmp_path)
        if self.sequential:
            self._send(connect, PAYLOAD)
            listener = self.transport.listen(listen)
        else:
            listener = self.transport.listen(listen)
            sender = threading.Thread(
                target=self._send, args=(self.connect_uri(listener, connect), PAYLOAD)
            )
            sender.start()
        try:
            with listener.accept() as stream:
                assert stream.read_exact(len(PAYLOAD) + 1) == PAYLOAD  # then end of stream
        finally:
            listener.close()
            if not self.sequential:
                sender.join(30)

    def test_return_path_when_declared(self):
        listen, connect = self.endpoints(self.tmp_path)
        if self.sequential:
            stream = self.transport.connect(connect)
            assert not stream.has_return_path  # nobody is there to answer
            stream.close()
            return
        listener = self.transport.listen(listen)
        answers = []

        def source():
            with self.transport.connect(self.connect_uri(listener, connect)) as stream:
                stream.write(b"ping")
                answers.append((stream.has_return_path, stream.read_exact(2)))

        thread = threading.Thread(target=source)
        thread.start()
        try:
            with listener.accept() as stream:
                assert stream.read_exact(4) == b"ping"
                if stream.has_return_path:
                    stream.write(b"OK")
        finally:
            listener.close()
            thread.join(30)
        has_return_path, answer = answers[0]
        assert answer == (b"OK" if has_return_path else b"")

    def test_close_wakes_a_waiting_accept(self):
        if self.sequential:
            return  # accept() never waits: the command is already running
        listener = self.transport.listen(self.endpoints(self.tmp_path)[0])
        errors = []

        def wait():
            try:
                listener.accept()
            except TransportError as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        listener.close()
        waiter.join(10)
        assert not waiter.is_alive() and errors

    def test_unreachable_peer_is_a_transport_error(self):
        with pytest.raises(TransportError):
            self._send(self.unreachable(self.tmp_path), PAYLOAD)
