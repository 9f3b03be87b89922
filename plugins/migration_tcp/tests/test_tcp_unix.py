"""tcp: and unix: transports over loopback: both directions, addresses, failures."""

from __future__ import annotations

import os
import socket
import threading
from contextlib import closing

import pytest
from arctern_migration_tcp.plugin import TcpTransport, UnixTransport

from arctern.errors import TransportError

PAYLOAD = os.urandom(3 << 20)


def _roundtrip(transport, listen_uri: str, connect_uri_of) -> None:
    listener = transport.listen(listen_uri)
    received = []

    def serve():
        with listener.accept() as stream:
            received.append(stream.read_exact(len(PAYLOAD)))
            stream.write(b"ack")
            received.append(stream.read(1))

    server = threading.Thread(target=serve)
    server.start()
    try:
        with transport.connect(connect_uri_of(listener)) as stream:
            assert stream.has_return_path
            stream.write(PAYLOAD)
            assert stream.read_exact(3) == b"ack"
            stream.finish()
        server.join(10)
    finally:
        listener.close()
    assert received == [PAYLOAD, b""]


def _tcp_uri(listener) -> str:
    address = listener.address()
    host = address["host"]
    return f"tcp:[{host}]:{address['port']}" if ":" in host else f"tcp:{host}:{address['port']}"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_tcp_ipv6_roundtrip_and_v6only():
    transport = TcpTransport()
    _roundtrip(transport, "tcp:[::1]:0", _tcp_uri)
    with closing(transport.listen("tcp:[::1]:0")) as listener:
        port = listener.address()["port"]
        with pytest.raises(TransportError, match="refused"):
            transport.connect(f"tcp:127.0.0.1:{port}")


def test_tcp_listens_only_on_the_address_given():
    transport = TcpTransport()
    with closing(transport.listen("tcp:127.0.0.1:0")) as listener:
        port = listener.address()["port"]
        with pytest.raises(TransportError, match="cannot connect to tcp:127.0.0.2:.*refused"):
            transport.connect(f"tcp:127.0.0.2:{port}")


def test_tcp_port_in_use_is_one_clear_error():
    transport = TcpTransport()
    with closing(transport.listen("tcp:127.0.0.1:0")) as listener:
        port = listener.address()["port"]
        with pytest.raises(TransportError, match=f"cannot listen on tcp:127.0.0.1:{port}"):
            transport.listen(f"tcp:127.0.0.1:{port}")


@pytest.mark.parametrize(
    "uri", ["tcp:", "tcp:localhost", "tcp:host:port", "tcp:h:99999", "tcp:::1:44", "nocolon"]
)
def test_tcp_bad_uris(uri):
    with pytest.raises(TransportError, match="bad migration URI"):
        TcpTransport().check_uri(uri)


def test_tcp_unresolvable_host():
    with pytest.raises(TransportError, match="cannot resolve 'no-such-host.invalid'"):
        TcpTransport().connect("tcp:no-such-host.invalid:4444")


def test_dead_peer_is_a_transport_error():
    transport = TcpTransport()
    listener = transport.listen("tcp:127.0.0.1:0")
    peer = []
    server = threading.Thread(target=lambda: peer.append(listener.accept()))
    server.start()
    stream = transport.connect(_tcp_uri(listener))
    server.join(5)
    peer[0].close()
    listener.close()
    with pytest.raises(TransportError, match="migration stream tcp:"):
        for _ in range(100):
            stream.write(PAYLOAD)
    stream.close()


def test_unix_roundtrip_replaces_stale_socket_and_cleans_up(tmp_path):
    path = tmp_path / "mig.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    transport = UnixTransport()
    _roundtrip(transport, f"unix:{path}", lambda listener: f"unix:{listener.address()['path']}")
    assert not path.exists()


def test_unix_refuses_to_replace_a_regular_file(tmp_path):
    path = tmp_path / "precious"
    path.write_text("data")
    with pytest.raises(TransportError, match="cannot listen on unix:"):
        UnixTransport().listen(f"unix:{path}")
    assert path.read_text() == "data"


def test_unix_path_is_taken_verbatim_as_qemu_does(tmp_path):
    """A migration URI is no QEMU option string: ``,,`` stays two commas (QEMU 7.2 too)."""
    with closing(UnixTransport().listen(f"unix:{tmp_path}/c,,d.sock")):
        assert [p.name for p in tmp_path.iterdir()] == ["c,,d.sock"]


@pytest.mark.parametrize("side", ["listen", "connect"])
def test_unix_path_too_long_is_qemus_error(side):
    path = "/tmp/" + "a" * 120
    with pytest.raises(TransportError) as info:
        getattr(UnixTransport(), side)(f"unix:{path}")
    assert str(info.value) == (
        f"UNIX socket path '{path}' is too long: Path must be less than 108 bytes"
    )
