"""The QMP server against the real peer: the same bytes to qemu-system-i386 and arctern-system.

Both start with -S on the same kernel; each case is sent over a raw socket
and the replies (error class and text, or the return value) must be QEMU's.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arctern.plugins import Registry

#: Any Multiboot kernel both load at 1 MiB will do: microvm's built-in migration guest.
KERNEL = Registry().discover(["target"]).machine_type("microvm").builtin_guest("migration-demo")
EMULATORS = {
    "qemu": ["qemu-system-i386"],
    "arctern": [str(Path(sys.executable).with_name("arctern-system"))],
}

# HMP through human-monitor-command, on the kernel's bytes both emulators loaded at 1 MiB
HMP = [
    "info status",
    "xp /8xb 0x100000",
    "xp /4xw 0x100000",
    "xp /2xg 0x100000",
    "xp /4dh 0x100000",
    "xp /3ob 0x100000",
    "x /4c 0x100000",
    "xp /5uw 0x100000",
    "x /2x 0x100004",
    "xp /3xw 0xfeb00000",
    "bogus",
]


def _hmp(line: str) -> str:
    return json.dumps({"execute": "human-monitor-command", "arguments": {"command-line": line}})


# (request, what to compare): the whole reply, or only the error class
CASES = [
    (b'{"execute": "query-status", "id": "early"}', "reply"),
    (b'{"execute": "qmp_capabilities", "id": 1}', "reply"),
    (b'["a list"]', "reply"),
    (b'{"execute": "query-status", "foo": 1}', "reply"),
    (b'{"execute": 5}', "reply"),
    (b'{"execute": "query-status", "arguments": 5}', "reply"),
    (b'{"execute": "nosuch", "id": "x"}', "reply"),
    (b'{"execute": "migrate"}', "reply"),
    (b'{"execute": "migrate", "arguments": {"uri": 5}}', "reply"),
    (b'{"execute": "query-status", "arguments": {"bogus": 1}}', "reply"),
    (b'{"execute": "qmp_capabilities"}', "reply"),
    (b'{"execute": "migrate-incoming", "arguments": {"uri": "tcp:127.0.0.1:0"}}', "reply"),
    (b'{"execute": "migrate-set-parameters", "arguments": {"bogus": 1}}', "reply"),
    (b'{"execute": "query-status"}', "reply"),
    (b'{"execute": "query-name"}', "reply"),
    (b'{"execute": "query-migrate-parameters"}', "parameters"),
    (b'{"execute": "migrate", "arguments": {"uri": "ftp:x"}}', "class"),
    (b'{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": -1}}', "class"),
    (b'{"execute": "system_powerdown"}', "reply"),
    (b'{"execute": "stop"}', "reply"),
    *((_hmp(line).encode(), "reply") for line in HMP),
    (b'{"execute": "cont"}', "reply"),
    (b'{"exec-oob": "query-status", "id": 2}', "reply"),  # oob was not enabled
    # last: QEMU answers malformed JSON once per bad token, Arctern once per line
    (b"this is not json", "class"),
]
# A session that enables out-of-band execution (QMPClient does when it is offered)
OOB_CASES = [
    (b'{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}', "reply"),
    (b'{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}}', "reply"),
    (b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}', "reply"),
    (b'{"exec-oob": "query-status", "id": 1}', "reply"),
    (b'{"exec-oob": "nosuch", "id": 2}', "reply"),
    (b'{"exec-oob": 5}', "reply"),
    (b'{"exec-oob": "query-status", "execute": "query-status"}', "reply"),
    (b'{"execute": "query-status", "id": 3}', "reply"),
]


def _session(emulator: str, tmp: Path, cases: list = CASES) -> list:
    path = tmp / f"{emulator}-{len(cases)}.qmp"
    command = [*EMULATORS[emulator], "-M", "microvm,acpi=off", "-nodefaults", "-display", "none"]
    command += ["-S"]
    command += ["-kernel", str(KERNEL), "-qmp", f"unix:{path},server=on,wait=off"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, emulator
            time.sleep(0.02)
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(60)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        replies = [json.loads(reader.readline())]
        events: list = []
        for request, _ in cases:
            sock.sendall(request + b"\n")
            replies.append(_reply(reader, events))
        sock.sendall(b'{"execute": "query-status", "id": "last"}\n')
        _reply(reader, events)  # events sent before this reply are all in
        sock.close()
        return [*replies, events]
    finally:
        process.terminate()
        process.wait(10)


def _reply(reader, events: list | None = None) -> dict:
    """The next reply; events on the way are collected (name and data) into ``events``."""
    while True:
        message = json.loads(reader.readline())
        if "event" not in message:
            return message
        if events is not None:
            events.append((message["event"], message.get("data", {})))


@pytest.fixture(scope="module")
def replies(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("qmp")
    return {name: _session(name, tmp) for name in EMULATORS}


@pytest.fixture(scope="module")
def oob_replies(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("qmp-oob")
    return {name: _session(name, tmp, OOB_CASES) for name in EMULATORS}


@pytest.mark.parametrize("index", range(len(OOB_CASES)), ids=[c[0].decode() for c in OOB_CASES])
def test_out_of_band_session_as_qemu(oob_replies, index):
    assert oob_replies["arctern"][index + 1] == oob_replies["qemu"][index + 1]


def test_same_events_as_qemu(replies):
    assert replies["arctern"][-1] == replies["qemu"][-1]


def test_greeting_has_qemus_shape(replies):
    for name, session in replies.items():
        greeting = session[0]["QMP"]
        assert set(greeting) == {"version", "capabilities"}, name
        assert greeting["capabilities"] == ["oob"], name
        assert set(greeting["version"]["qemu"]) == {"major", "minor", "micro"}, name


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0].decode()[:50] for c in CASES])
def test_same_reply_as_qemu(replies, index):
    _request, compare = CASES[index]
    qemu, arctern = replies["qemu"][index + 1], replies["arctern"][index + 1]
    if compare == "reply":
        assert arctern == qemu
    elif compare == "class":
        assert arctern["error"]["class"] == qemu["error"]["class"]
    else:  # the two parameters Arctern has, with QEMU's defaults
        for key in ("max-bandwidth", "downtime-limit"):
            assert arctern["return"][key] == qemu["return"][key]


def _migrate_to_file(emulator: str, tmp: Path) -> dict:
    path = tmp / f"{emulator}-mig.qmp"
    command = [*EMULATORS[emulator], "-M", "microvm,acpi=off", "-nodefaults", "-display", "none"]
    command += ["-kernel", str(KERNEL), "-qmp", f"unix:{path},server=on,wait=off"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not path.exists():
            assert process.poll() is None, emulator
            time.sleep(0.02)
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(60)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        reader.readline()

        def execute(name: str, **args) -> dict:
            sock.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
            return _reply(reader)["return"]

        execute("qmp_capabilities")
        execute("migrate", uri=f"exec:cat > {tmp / emulator}.state")
        deadline = time.monotonic() + 60
        while (info := execute("query-migrate"))["status"] != "completed":
            assert info["status"] in ("setup", "active", "device"), info
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info["run-state"] = execute("query-status")["status"]
        sock.close()
        return info
    finally:
        process.terminate()
        process.wait(10)


def test_query_migrate_uses_qemus_fields(tmp_path):
    qemu, arctern = (_migrate_to_file(name, tmp_path) for name in ("qemu", "arctern"))
    assert arctern["run-state"] == qemu["run-state"] == "postmigrate"
    assert set(arctern) <= set(qemu)  # no invented names
    assert set(arctern["ram"]) <= set(qemu["ram"])
    required = {"status", "total-time", "downtime", "setup-time"}
    assert required <= set(arctern)
    ram = {"transferred", "remaining", "total", "duplicate", "normal", "normal-bytes", "mbps"}
    assert ram | {"dirty-pages-rate", "dirty-sync-count"} <= set(arctern["ram"])
