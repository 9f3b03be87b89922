"""The queries a management tool sends on connecting, to qemu-system-i386 and arctern-system.

Both run the same machine (microvm, -S, the same -uuid, drive and chardevs)
and are asked through the qemu.qmp client; the replies must be QEMU's except
where Arctern honestly differs (it has no KVM to report as present).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from guests.build import emulator_command
from qmp_requests import replies_to
from test_system_monitor import connect, emulator_with_qmp

from arctern.plugins import Registry

KERNEL = Registry().discover(["target"]).machine_type("microvm").builtin_guest("migration-demo")
UUID = "6C0E4D2A-1B2C-4D5E-8F90-A1B2C3D4E5F6"


def _hmp(line: str) -> tuple[str, dict]:
    return ("human-monitor-command", {"command-line": line})


# (command, arguments)
SAME = [
    ("query-target", {}),
    ("query-uuid", {}),
    ("query-iothreads", {}),
    ("query-hotpluggable-cpus", {}),
    ("query-events", {}),  # gone by 7.2: CommandNotFound
    ("query-uuid", {"bogus": 1}),
    ("query-target", {"arch": "i386"}),
    _hmp("info uuid"),
    _hmp("info nosuch"),
]
OWN = [("query-kvm", {}), _hmp("info kvm"), ("query-machines", {}), ("query-cpu-definitions", {})]


@pytest.fixture(scope="module")
def replies(tmp_path_factory) -> dict[str, list]:
    tmp = tmp_path_factory.mktemp("queries")
    result = {}
    for emulator in ("qemu", "arctern"):
        sock = tmp / f"{emulator}.qmp"
        with emulator_with_qmp(emulator, sock, KERNEL, "-S", "-uuid", UUID):
            result[emulator] = asyncio.run(replies_to(sock, SAME + OWN))
    return result


@pytest.mark.parametrize("index", range(len(SAME)), ids=[f"{n} {json.dumps(a)}" for n, a in SAME])
def test_same_reply_as_qemu(replies, index):
    assert replies["arctern"][index] == replies["qemu"][index]


def test_uuid_is_the_command_lines_in_lower_case(replies):
    assert replies["arctern"][1] == {"return": {"UUID": UUID.lower()}}


def test_kvm_not_enabled_and_honestly_not_present(replies):
    qemu_kvm, qemu_info = replies["qemu"][len(SAME) : len(SAME) + 2]
    kvm, info = replies["arctern"][len(SAME) : len(SAME) + 2]
    assert kvm["return"]["enabled"] is qemu_kvm["return"]["enabled"] is False
    assert kvm == {"return": {"enabled": False, "present": False}}
    # QEMU's words for each case: a KVM build not using it, and one without KVM
    assert qemu_info == {"return": "kvm support: disabled\r\n"}
    assert info == {"return": "kvm support: not compiled\r\n"}


def test_bad_uuid_option_is_qemus_error_line():
    results = {}
    for emulator in ("qemu", "arctern"):
        command = [*emulator_command(emulator), "-nodefaults", "-uuid", "not-a-uuid"]
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        results[emulator] = (run.returncode, run.stderr.split(": ", 1)[1])
    assert results["arctern"] == results["qemu"]
    assert results["qemu"] == (1, "-uuid not-a-uuid: failed to parse UUID string: wrong format\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _chardevs(sock: Path, port: int) -> tuple[list, list, str, int]:
    """query-chardev before and after a TCP client connects to chardev t1, and info chardev."""
    client = await connect(sock)
    try:
        before = await client.execute("query-chardev")
        peer = socket.create_connection(("127.0.0.1", port))
        try:
            deadline = time.monotonic() + 10
            while True:
                after = await client.execute("query-chardev")
                t1 = next(c for c in after if c["label"] == "t1")
                if not t1["filename"].startswith("disconnected:"):
                    break
                assert time.monotonic() < deadline, t1
                await asyncio.sleep(0.02)
            info = await client.execute("human-monitor-command", {"command-line": "info chardev"})
            peer_port = peer.getsockname()[1]
        finally:
            peer.close()
    finally:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()
    return before, after, info.replace(str(peer_port), "PEER"), peer_port


def _chardev_session(emulator: str, tmp: Path) -> tuple:
    sock, port = tmp / f"{emulator}.qmp", _free_port()
    command = [*emulator_command(emulator), "-nodefaults", "-display", "none", "-S"]
    command += ["-kernel", str(KERNEL), "-monitor", "none"]
    command += ["-monitor", f"unix:{tmp / emulator}.hmp,server=on,wait=off"]
    command += ["-qmp", f"unix:{sock},server=on,wait=off"]  # compat_monitorN: in this order
    command += ["-chardev", f"file,id=f0,path={tmp / emulator}.out"]
    command += ["-chardev", f"socket,id=s1,path={tmp / emulator}.s1,server=on,wait=off"]
    command += ["-chardev", "null,id=io,mux=on", "-serial", "chardev:io", "-mon", "chardev=io"]
    command += ["-serial", f"file:{tmp / emulator}.out2", "-serial", "null"]
    command += ["-chardev", f"socket,id=t1,host=127.0.0.1,port={port},server=on,wait=off"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        before, after, info, peer_port = asyncio.run(_chardevs(sock, port))
    finally:
        process.kill()
        process.wait()
    text = json.dumps([before, after]).replace(str(tmp / emulator), "TMP")
    text = text.replace(str(peer_port), "PEER").replace(f":{port}", ":PORT")
    before, after = json.loads(text)
    info = info.replace(str(tmp / emulator), "TMP").replace(f":{port}", ":PORT")
    return before, after, info


def _by_label(chardevs: list) -> list:
    return sorted(chardevs, key=lambda c: c["label"])  # QEMU's order is its hash table's


def test_chardevs_as_qemu_lists_them(tmp_path):
    sessions = {emulator: _chardev_session(emulator, tmp_path) for emulator in ("qemu", "arctern")}
    (q_before, q_after, q_info), (before, after, info) = sessions["qemu"], sessions["arctern"]
    assert _by_label(before) == _by_label(q_before)
    assert _by_label(after) == _by_label(q_after)
    t1 = next(c for c in after if c["label"] == "t1")
    assert t1["filename"] == "tcp:127.0.0.1:PORT,server=on <-> 127.0.0.1:PEER"
    assert sorted(info.splitlines()) == sorted(q_info.splitlines())
    assert "compat_monitor0: filename=disconnected:unix:TMP.hmp,server=on" in info.splitlines()


def test_machines_are_qemus_entries_but_for_the_cpu_count_and_the_default(replies):
    qemu = {m["name"]: m for m in replies["qemu"][len(SAME) + 2]["return"]}
    ours = replies["arctern"][len(SAME) + 2]["return"]
    assert [m["name"] for m in ours] == ["microvm"]
    microvm = dict(ours[0])
    assert microvm.pop("is-default") is True  # QEMU's i386 default is a PC board
    assert microvm.pop("cpu-max") == 1 and qemu["microvm"].pop("cpu-max") == 288  # -smp 1 only
    assert microvm == qemu["microvm"]


def test_cpu_definitions_are_qemus_but_unversioned(replies):
    qemu = {c["name"]: c for c in replies["qemu"][len(SAME) + 3]["return"]}
    ours = replies["arctern"][len(SAME) + 3]["return"]
    assert {"qemu32", "pentium"} <= {c["name"] for c in ours}
    for cpu in ours:
        assert cpu == {k: v for k, v in qemu[cpu["name"]].items() if k != "alias-of"}
