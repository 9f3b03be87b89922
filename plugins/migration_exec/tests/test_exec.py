"""exec: transport: streams through files and gzip, failing commands, cancellation."""

from __future__ import annotations

import gzip
import os
import threading
import time

import pytest
from arctern_migration_exec.plugin import ExecTransport

from arctern.errors import TransportError

PAYLOAD = os.urandom(1 << 20) + bytes(1 << 20)


def _send(uri: str) -> None:
    stream = ExecTransport().connect(uri)
    try:
        stream.write(PAYLOAD)
        stream.finish()
    finally:
        stream.close()


def _receive(uri: str) -> bytes:
    listener = ExecTransport().listen(uri)
    try:
        stream = listener.accept()
        data = stream.read_exact(len(PAYLOAD) + 1)
        stream.close()
        return data
    finally:
        listener.close()


def test_through_gzip(tmp_path):
    target = tmp_path / "state.gz"
    _send(f"exec:gzip -c > {target}")
    assert gzip.decompress(target.read_bytes()) == PAYLOAD
    assert _receive(f"exec:gzip -dc {target}") == PAYLOAD


def test_outgoing_command_that_fails_names_its_error(tmp_path):
    with pytest.raises(TransportError, match=r"exec:cat > .*/missing/f failed \(exit status"):
        _send(f"exec:cat > {tmp_path}/missing/f")


def test_outgoing_command_that_exits_early(tmp_path):
    with pytest.raises(TransportError, match=r"exec:exit 3 failed \(exit status 3\)"):
        _send("exec:exit 3")


def test_incoming_command_that_fails(tmp_path):
    with pytest.raises(TransportError, match=r"exec:cat .*absent failed.*No such file"):
        _receive(f"exec:cat {tmp_path}/absent")


def test_close_stops_a_command_blocked_reading():
    listener = ExecTransport().listen("exec:sleep 30 | cat")
    stream = listener.accept()
    got = []
    reader = threading.Thread(target=lambda: got.append(stream.read(10)))
    reader.start()
    time.sleep(0.1)  # most likely blocked in read by now; a read after close ends too
    stream.close()
    reader.join(60)  # only catches a hang
    assert got == [b""]


@pytest.mark.parametrize("uri", ["exec:", "exec:   "])
def test_empty_command_is_a_bad_uri(uri):
    with pytest.raises(TransportError, match="bad migration URI"):
        ExecTransport().check_uri(uri)
