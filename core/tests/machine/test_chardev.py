"""Character backends as QEMU spells them: null, file:, unix:...,server, and errors."""

import os
import select
import socket
import threading

import pytest

from arctern.errors import MachineError
from arctern.machine.chardev import (
    FileChardev,
    MemoryChardev,
    SocketServerChardev,
    open_chardev,
)


def test_none_is_no_backend_and_null_swallows_output():
    assert open_chardev("none") is None
    null = open_chardev("null")
    null.write(b"dropped")
    null.poll()
    null.close()


def test_file_backend_writes_the_file(tmp_path):
    path = tmp_path / "serial.log"
    path.write_text("old content")
    chardev = open_chardev(f"file:{path}")
    assert isinstance(chardev, FileChardev)
    chardev.write(b"hello ")
    chardev.write(b"world\n")
    chardev.close()
    chardev.close()
    assert path.read_bytes() == b"hello world\n"


def test_file_backend_in_a_missing_directory_is_one_error(tmp_path):
    with pytest.raises(MachineError, match="Could not open .*No such file"):
        open_chardev(f"file:{tmp_path}/no/such/dir/log")


@pytest.mark.parametrize("spec", ["zz", "file:", "unix:", "udp:localhost:4444"])
def test_unknown_backends_are_refused(spec):
    with pytest.raises(MachineError, match="is not a valid char driver"):
        open_chardev(spec)


def test_memory_backend_collects_output_and_feeds_input():
    chardev = MemoryChardev()
    received = []
    chardev.set_receiver(received.append)
    chardev.write(b"abc")
    chardev.feed(b"typed")
    assert received == []  # input is delivered by the main loop's poll only
    chardev.poll()
    assert received == [b"typed"] and chardev.output == b"abc"


def poll_until(chardev, condition) -> None:
    """Serve the backend as the main loop does until ``condition()`` (5 s at most)."""
    for _ in range(100):
        chardev.poll()
        if condition():
            return
        select.select(chardev.wait_fds(), [], [], 0.05)


def test_unix_server_without_wait_serves_a_client(tmp_path):
    path = str(tmp_path / "serial.sock")
    chardev = open_chardev(f"unix:{path},server=on,wait=off")
    assert isinstance(chardev, SocketServerChardev)
    received = []
    chardev.set_receiver(received.append)
    chardev.write(b"before anyone listens")  # dropped, as QEMU does
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    client.sendall(b"ping")
    client.settimeout(5)
    poll_until(chardev, lambda: received)
    assert received == [b"ping"]
    chardev.write(b"pong")
    assert client.recv(16) == b"pong"
    client.close()
    chardev.close()
    assert not os.path.exists(path)


def test_unix_server_waits_for_its_first_client(tmp_path):
    path = str(tmp_path / "wait.sock")

    def connect_later():
        for _ in range(200):
            if os.path.exists(path):
                break
            threading.Event().wait(0.01)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        data.append(sock.recv(5))
        sock.close()

    data = []
    thread = threading.Thread(target=connect_later)
    thread.start()
    chardev = open_chardev(f"unix:{path},server")  # blocks until the thread connects
    chardev.write(b"hello")
    thread.join(5)
    chardev.close()
    assert data == [b"hello"]


def test_unix_client_connects_to_a_listening_peer(tmp_path):
    path = str(tmp_path / "peer.sock")
    with pytest.raises(MachineError, match="Failed to connect to .*No such file"):
        open_chardev(f"unix:{path}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        chardev = open_chardev(f"unix:{path}")
        peer, _ = listener.accept()
        chardev.write(b"from the guest")
        assert peer.recv(64) == b"from the guest"
        received = []
        chardev.set_receiver(received.append)
        peer.sendall(b"to the guest")
        select.select(chardev.wait_fds(), [], [], 5)
        chardev.poll()
        assert received == [b"to the guest"]
        peer.close()
        select.select(chardev.wait_fds(), [], [], 5)
        chardev.poll()  # the peer left: output is dropped from now on
        assert chardev.wait_fds() == []
        chardev.write(b"nobody listens")
        chardev.close()


def test_tcp_server_on_loopback_talks_both_ways():
    chardev = open_chardev("tcp:127.0.0.1:0,server=on,wait=off")  # port 0: any free port
    received = []
    chardev.set_receiver(received.append)
    with socket.create_connection(("127.0.0.1", chardev.port), timeout=5) as client:
        client.sendall(b"over tcp")
        poll_until(chardev, lambda: received)
        assert received == [b"over tcp"]
        chardev.write(b"answer")
        assert client.recv(16) == b"answer"
    chardev.close()


def test_tcp_client_connects_and_reports_refusal():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        with pytest.raises(MachineError, match=f"Failed to connect to '127.0.0.1:{port}'"):
            open_chardev(f"tcp:127.0.0.1:{port}")  # bound, not listening: refused
        listener.listen(1)
        chardev = open_chardev(f"tcp:127.0.0.1:{port}")
        peer, _ = listener.accept()
        chardev.write(b"hello")
        assert peer.recv(16) == b"hello"
        peer.close()
        chardev.close()
    with pytest.raises(MachineError, match="expected tcp:HOST:PORT"):
        open_chardev("tcp:localhost")


@pytest.mark.parametrize("spec", ["unix:{},server=on,wait=off", "unix:{}"])
def test_unix_path_too_long_is_qemus_error(tmp_path, spec):
    path = str(tmp_path / ("x" * 120))
    with pytest.raises(MachineError) as error:
        open_chardev(spec.format(path))
    assert str(error.value) == (
        f"UNIX socket path '{path}' is too long: Path must be less than 108 bytes"
    )
