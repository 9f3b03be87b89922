"""Socket paths as QEMU takes them: ``,,`` in -qmp, verbatim migration URIs, sun_path limits."""

from __future__ import annotations

import pytest
from qemu.qmp import ExecuteError

from arctern.errors import UsageError
from arctern.monitor.listener import parse_socket_spec

LONG = "/tmp/" + "a" * 120  # 125 bytes: more than sun_path's 108
TOO_LONG = f"UNIX socket path '{LONG}' is too long: Path must be less than 108 bytes"


def _padded_path(directory, length: int) -> str:
    """A socket path of exactly ``length`` bytes in ``directory``."""
    prefix = f"{directory}/q"
    assert len(prefix) < length
    return prefix + "x" * (length - len(prefix))


async def _status(client):
    return (await client.execute("query-status"))["status"]


def test_double_comma_is_a_comma_in_the_qmp_path():
    kind, path, options = parse_socket_spec("unix:/tmp/a,,b,,,,c,server=on,wait=off")
    assert (kind, path, options) == ("unix", "/tmp/a,b,,c", {"server": "on", "wait": "off"})


def test_qmp_server_on_a_path_with_a_comma(served, qmp, tmp_path):
    _machine, monitor, _path = served
    monitor.add_qmp(f"unix:{tmp_path}/q,,mp.sock,server=on,wait=off")
    assert qmp(str(tmp_path / "q,mp.sock"), _status) == "running"


def test_qmp_socket_path_too_long_is_qemus_error(served):
    _machine, monitor, _path = served
    with pytest.raises(UsageError) as info:
        monitor.add_qmp(f"unix:{LONG},server=on,wait=off")
    assert str(info.value) == f"-qmp unix:{LONG},server=on,wait=off: {TOO_LONG}"


def test_qmp_socket_path_at_the_limit_works(served, qmp, tmp_path):
    """107 bytes fit sun_path; the temporary name used for an atomic appearance does not."""
    _machine, monitor, _path = served
    path = _padded_path(tmp_path, 107)
    monitor.add_qmp(f"unix:{path},server=on,wait=off")
    assert qmp(path, _status) == "running"


def test_migrate_to_a_socket_path_too_long(served, qmp):
    async def body(client):
        with pytest.raises(ExecuteError) as info:
            await client.execute("migrate", {"uri": f"unix:{LONG}"})
        return str(info.value), await _status(client)

    error, status = qmp(served[2], body)
    assert error == TOO_LONG and status == "running"


def test_migrate_incoming_on_a_socket_path_too_long(serve, image, qmp):
    _machine, _monitor, path = serve(image, defer_incoming=True)

    async def body(client):
        with pytest.raises(ExecuteError) as info:
            await client.execute("migrate-incoming", {"uri": f"unix:{LONG}"})
        return str(info.value), await _status(client)

    assert qmp(path, body) == (TOO_LONG, "inmigrate")
