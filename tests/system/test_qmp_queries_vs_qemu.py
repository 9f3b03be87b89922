"""The queries a management tool sends on connecting, to qemu-system-i386 and arctern-system.

Both run the same machine (microvm, -S, the same -uuid, drive and chardevs)
and are asked through the qemu.qmp client; the replies must be QEMU's except
where Arctern honestly differs (it has no KVM to report as present).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from guests.build import emulator_command
from qemu.qmp import ExecuteError
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
OWN = [("query-kvm", {}), _hmp("info kvm")]


async def _ask(sock: Path, requests: list) -> list:
    client = await connect(sock)
    replies = []
    try:
        for name, args in requests:
            try:
                replies.append({"return": await client.execute(name, args or None)})
            except ExecuteError as exc:
                replies.append({"error": {"class": exc.error_class, "desc": str(exc)}})
    finally:
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()
    return replies


@pytest.fixture(scope="module")
def replies(tmp_path_factory) -> dict[str, list]:
    tmp = tmp_path_factory.mktemp("queries")
    result = {}
    for emulator in ("qemu", "arctern"):
        sock = tmp / f"{emulator}.qmp"
        with emulator_with_qmp(emulator, sock, KERNEL, "-S", "-uuid", UUID):
            result[emulator] = asyncio.run(_ask(sock, SAME + OWN))
    return result


@pytest.mark.parametrize("index", range(len(SAME)), ids=[f"{n} {json.dumps(a)}" for n, a in SAME])
def test_same_reply_as_qemu(replies, index):
    assert replies["arctern"][index] == replies["qemu"][index]


def test_uuid_is_the_command_lines_in_lower_case(replies):
    assert replies["arctern"][1] == {"return": {"UUID": UUID.lower()}}


def test_kvm_not_enabled_and_honestly_not_present(replies):
    qemu_kvm, qemu_info = replies["qemu"][len(SAME) :]
    kvm, info = replies["arctern"][len(SAME) :]
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
