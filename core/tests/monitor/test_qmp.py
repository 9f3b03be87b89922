"""The QMP server with the qemu.qmp client library, and a raw socket for hostile input."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from types import SimpleNamespace

import pytest
from qemu.qmp import ExecuteError

from arctern.errors import UsageError
from arctern.monitor.listener import parse_socket_spec


async def _next_event(client, name: str) -> dict:
    while True:
        event = await asyncio.wait_for(client.events.get(), 60)
        if event["event"] == name:
            return event


def test_greeting_negotiation_and_queries(served, qmp):
    machine, _monitor, path = served

    async def body(client):
        assert client.greeting.QMP.capabilities == ["oob"]  # and QMPClient enabled it
        version = await client.execute("query-version")
        status = await client.execute("query-status")
        name = await client.execute("query-name")
        commands = {c["name"] for c in await client.execute("query-commands")}
        block = await client.execute("query-block")
        stats = await client.execute("query-blockstats")
        cpus = await client.execute("query-cpus-fast")
        return version, status, name, commands, block, stats, cpus

    version, status, name, commands, block, stats, cpus = qmp(path, body)
    assert version["package"].startswith("Arctern ")
    assert status == {"status": "running", "singlestep": False, "running": True}
    assert name == {"name": "guest-a"}
    assert {"migrate", "query-migrate", "migrate-incoming", "human-monitor-command"} <= commands
    assert block[0]["device"] == "disk0" and block[0]["inserted"]["drv"] == "raw"
    assert block[0]["inserted"]["file"] == machine.drives["disk0"].filename
    assert stats[0]["device"] == "disk0" and "wr_bytes" in stats[0]["stats"]
    assert cpus[0]["cpu-index"] == 0 and cpus[0]["target"] == "test"


def test_stop_cont_reset_emit_events_with_timestamps(served, qmp):
    machine, _monitor, path = served

    async def body(client):
        await client.execute("stop")
        stop = await _next_event(client, "STOP")
        paused = await client.execute("query-status")
        await client.execute("cont")
        resume = await _next_event(client, "RESUME")
        await client.execute("system_reset")
        reset = await _next_event(client, "RESET")
        return stop, paused, resume, reset

    stop, paused, resume, reset = qmp(path, body)
    assert paused["status"] == "paused" and not paused["running"]
    assert stop["timestamp"]["seconds"] > 1e9 and 0 <= stop["timestamp"]["microseconds"] < 1e6
    assert resume["event"] == "RESUME"
    assert reset["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
    assert machine.runstate == "running"


def test_error_classes(served, qmp):
    _machine, _monitor, path = served

    async def body(client):
        errors = []
        for cmd, args in [
            ("no-such-command", None),
            ("migrate", {}),
            ("migrate", {"uri": 5}),
            ("query-status", {"bogus": 1}),
            ("migrate", {"uri": "ftp:somewhere"}),
            ("qmp_capabilities", None),
        ]:
            try:
                await client.execute(cmd, args)
            except ExecuteError as exc:
                errors.append((exc.error_class, str(exc)))
        return errors

    assert qmp(path, body) == [
        ("CommandNotFound", "The command no-such-command has not been found"),
        ("GenericError", "Parameter 'uri' is missing"),
        ("GenericError", "Invalid parameter type for 'uri', expected: string"),
        ("GenericError", "Parameter 'bogus' is unexpected"),
        (
            "GenericError",
            "Parameter 'uri' expects a valid migration protocol (unknown migration transport "
            "'ftp' (available: exec, tcp, unix))",
        ),
        ("CommandNotFound", "Capabilities negotiation is already complete, command ignored"),
    ]


def _raw_session(path: str):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(60)
    sock.connect(path)
    reader = sock.makefile("rb")
    greeting = json.loads(reader.readline())
    assert "QMP" in greeting
    return sock, reader


def test_hostile_input_gets_error_replies_and_the_server_goes_on(served):
    _machine, _monitor, path = served
    sock, reader = _raw_session(path)

    def reply():
        return json.loads(reader.readline())

    sock.sendall(b'{"execute": "query-status"}\n')
    assert reply()["error"]["desc"].startswith("Expecting capabilities negotiation")
    sock.sendall(b'{"execute": "qmp_capabilities", "id": 1}')
    assert reply() == {"return": {}, "id": 1}
    sock.sendall(b"this is not json\n")
    assert reply()["error"]["class"] == "GenericError"
    sock.sendall(b'["a list"]')
    assert reply()["error"]["desc"] == "QMP input must be a JSON object"
    sock.sendall(b'{"execute": "query-status", "foo": 1}')
    assert reply()["error"]["desc"] == "QMP input member 'foo' is unexpected"
    sock.sendall(b'{"execute": "query-name", "arguments": {"x": "' + b"A" * (2 << 20) + b'"}}')
    assert "larger than" in reply()["error"]["desc"]
    # the tail of the oversized message may cost an error reply; then all is well again
    sock.sendall(b'\n{"execute": "query-status", "id": "after"}')
    while (answer := reply()).get("id") != "after":
        assert "error" in answer
    assert answer["return"]["running"] is True
    sock.sendall(b"[" * 5000 + b"\n")
    assert "nesting" in reply()["error"]["desc"]
    # two messages in one write, one message split across writes, an escaped quote
    sock.sendall(b'{"execute": "query-name", "id": "a\\"}"}{"execute": "query-st')
    time.sleep(0.05)
    sock.sendall(b'atus", "id": 2}')
    assert reply()["id"] == 'a"}'
    assert reply()["id"] == 2
    sock.close()


def test_tcp_and_unix_servers_at_once(served, qmp):
    _machine, monitor, path = served
    server = monitor.add_qmp("tcp:127.0.0.1:0,server=on,wait=off")
    host, port = server.address()[:2]

    async def stop_and_watch(client):
        await client.execute("stop")
        return await _next_event(client, "STOP")

    async def other(client):
        return await client.execute("query-status")

    assert qmp(path, stop_and_watch)["event"] == "STOP"
    assert qmp((host, port), other)["status"] == "paused"


@pytest.mark.parametrize(
    "spec", ["unix:", "tcp:localhost", "udp:1.2.3.4:5", "unix:/x,server=maybe", "unix:/x,bogus"]
)
def test_bad_socket_specs(spec):
    with pytest.raises(UsageError, match="-qmp"):
        parse_socket_spec(spec)


def test_quit_shuts_down(served, qmp):
    machine, _monitor, path = served

    async def body(client):
        await client.execute("quit")
        return await _next_event(client, "SHUTDOWN")

    assert qmp(path, body)["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert machine.exit_status == 0


def test_human_monitor_command(served, qmp):
    machine, _monitor, path = served
    machine.ram.data[0x1000:0x1008] = bytes([0x41, 0x42, 0x43, 0x0A, 0x78, 0x56, 0x34, 0x12])

    async def body(client):
        out = []
        for line in [
            "info status",
            "xp /2xw 0x1000",
            "x /4c 0x1000",
            "xp /1xg 0x1000",
            "xp /2db 0x1004",
            "info block",
            "migrate_set_parameter max-bandwidth 64",
            "info migrate_parameters",
            "bogus",
            "stop now",
            "stop",
            "info status",
            "cont",
            "info status",
        ]:
            out.append(await client.execute("human-monitor-command", {"command-line": line}))
        return out

    raw = qmp(path, body)
    assert raw[0] == "VM status: running\r\n"  # QEMU's line ends
    out = [text.replace("\r\n", "\n") for text in raw]
    assert out[1] == "0000000000001000: 0x0a434241 0x12345678\n"
    assert out[2] == "00001000: 'A' 'B' 'C' '\\n' 'x' 'V' '4' '\\x12'" + " '\\x00'" * 8 + "\n"
    assert out[3] == "0000000000001000: 0x123456780a434241\n"
    assert out[4] == "0000000000001004: 120  86\n"
    assert out[5].startswith(f"disk0: {machine.drives['disk0'].filename} (raw)")
    assert out[7] == "max-bandwidth: 67108864 bytes/second\ndowntime-limit: 300 ms\n"
    assert out[8] == "unknown command: 'bogus'\n"
    assert out[9] == "usage: stop\n"  # stop takes no arguments
    assert out[11] == "VM status: paused\n"
    assert out[13] == "VM status: running\n"


def test_migrate_between_two_monitors_with_incoming_defer(served, serve, qmp, image):
    _machine, _monitor, src_path = served
    dest, _dest_monitor, dst_path = serve(image, defer_incoming=True)

    async def destination_listens(client):
        assert (await client.execute("query-status"))["status"] == "inmigrate"
        await client.execute("cont")  # as QEMU: run once loaded (it would anyway without -S)
        assert (await client.execute("query-status"))["status"] == "inmigrate"
        await client.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
        return await client.execute("query-migrate")

    async def source_migrates(client):
        with pytest.raises(ExecuteError, match="'-incoming' was not specified"):
            await client.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
        await client.execute(
            "migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}
        )
        await client.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
        statuses = []
        while not statuses or statuses[-1] not in ("completed", "failed"):
            statuses.append((await _next_event(client, "MIGRATION"))["data"]["status"])
        return statuses, await client.execute("query-migrate"), await client.execute("query-status")

    listening = qmp(dst_path, destination_listens)
    assert listening["status"] == "setup"
    port = int(listening["socket-address"][0]["port"])
    statuses, info, status = qmp(src_path, source_migrates)
    assert statuses == ["setup", "active", "device", "completed"]
    assert info["status"] == "completed" and info["ram"]["total"] == 1 << 20
    assert status["status"] == "postmigrate"

    async def destination_state(client):
        return await client.execute("query-status")

    assert qmp(dst_path, destination_state)["status"] == "running"
    assert dest.drives["disk0"].active


def test_a_failing_command_is_an_error_reply_not_a_crash(served, qmp, monkeypatch):
    from arctern.monitor import commands

    def broken(mon, args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(commands.COMMANDS, "query-name", commands.Command("query-name", broken, {}))
    _machine, _monitor, path = served

    async def body(client):
        with pytest.raises(ExecuteError, match="query-name failed: RuntimeError: a bug"):
            await client.execute("query-name")
        return await client.execute("query-status")

    assert qmp(path, body)["running"] is True


async def _named_root_nodes(client) -> list:
    return [drive["inserted"] for drive in await client.execute("query-block")]


def test_block_io_error_hook_becomes_qemus_event(served, qmp):
    """Any device (a third-party one too) reports an I/O error through the hook."""
    machine, _monitor, path = served
    # the reporting device model uses the drive (query-block shows io-status only then)
    machine.devices.append(SimpleNamespace(backend=machine.drives["disk0"], unrealize=lambda: None))

    def device_fails() -> None:  # on the main loop, between CPU slices, as a device would
        machine.remove_poll_hook(device_fails)
        notify = machine.registry.notify
        notify(
            "arctern_block_io_error",
            machine=machine,
            device="disk0",
            node_name=None,
            operation="write",
            action="stop",
            nospace=True,
            reason="No space left on device",
        )
        notify(
            "arctern_block_io_error",
            machine=object(),  # another machine's error is not ours to report
            device="other",
            node_name="n1",
            operation="read",
            action="report",
            nospace=None,
            reason="Input/output error",
        )

    async def io_status(client):
        return [d["io-status"] for d in await client.execute("query-block")]

    async def body(client):
        machine.add_poll_hook(device_fails)
        await client.execute("query-status")  # wakes the loop up
        event = await _next_event(client, "BLOCK_IO_ERROR")
        await client.execute("query-status")  # the hook has returned
        stopped = await io_status(client)
        await client.execute("cont")
        return event, client.events.clear(), stopped, await io_status(client)

    event, rest, stopped, after_cont = qmp(path, body)
    assert (stopped, after_cont) == (["nospace"], ["ok"])
    (node,) = [n["node-name"] for n in qmp(path, _named_root_nodes)]
    assert event["data"] == {
        "device": "disk0",
        "node-name": node,
        "operation": "write",
        "action": "stop",
        "nospace": True,
        "reason": "No space left on device",
    }
    assert set(event["timestamp"]) == {"seconds", "microseconds"}
    assert [e for e in rest if e["event"] == "BLOCK_IO_ERROR"] == []
