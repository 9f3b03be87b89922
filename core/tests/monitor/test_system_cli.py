"""The monitor options of arctern-system: several -qmp servers at once, -monitor stdio."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from arctern import __version__
from arctern.plugins import Registry

ARCTERN = str(Path(sys.executable).with_name("arctern-system"))
KERNEL = Registry().discover(["target"]).machine_type("microvm").builtin_guest("migration-demo")
BASE = [
    ARCTERN,
    "-M",
    "microvm,acpi=off",
    "-nodefaults",
    "-display",
    "none",
    "-kernel",
    str(KERNEL),
]
LONG_PATH = "/tmp/" + "a" * 120  # 125 bytes: more than sun_path's 108


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unix_and_tcp_qmp_servers_at_once(tmp_path):
    path, port = tmp_path / "qmp.sock", _free_port()
    process = subprocess.Popen(
        [*BASE, "-S"]
        + ["-qmp", f"unix:{path},server=on,wait=off"]
        + ["-qmp", f"tcp:127.0.0.1:{port},server=on,wait=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def scenario():
        deadline = time.monotonic() + 30
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.02)
        watcher, driver = QMPClient("watcher"), QMPClient("driver")
        await watcher.connect(str(path))
        await driver.connect(("127.0.0.1", port))
        await driver.execute("cont")
        resumed = await asyncio.wait_for(watcher.events.get(), 60)
        await driver.execute("stop")
        stopped = await asyncio.wait_for(watcher.events.get(), 60)
        status = await watcher.execute("query-status")
        await watcher.disconnect()
        await driver.disconnect()
        return resumed["event"], stopped["event"], status["status"]

    try:
        assert asyncio.run(scenario()) == ("RESUME", "STOP", "paused")
    finally:
        process.terminate()
        process.wait(10)


def test_monitor_stdio_session_shows_what_qemu_shows():
    """QEMU's line editor echoes and redraws each key even on a pipe; so does ours."""
    script = "info status\nxp /2xw 0x100000\ncont\ninfo status\nquit\n"
    runs = {}
    for emulator in (ARCTERN, "qemu-system-i386"):
        runs[emulator] = subprocess.run(
            [emulator, *BASE[1:], "-S", "-monitor", "stdio"],
            input=script.encode(),
            capture_output=True,
            timeout=60,
        )
        assert runs[emulator].returncode == 0, runs[emulator].stderr
    ours, qemus = (runs[e].stdout for e in (ARCTERN, "qemu-system-i386"))
    assert re.match(rb"QEMU \S+ monitor - type 'help'", qemus)
    assert ours == re.sub(rb"^QEMU \S+", f"Arctern {__version__}".encode(), qemus)
    shown = re.sub(rb"\x1b\[[KD]", b"", ours).decode()  # the final state of each line
    assert "\r\nVM status: paused (prelaunch)\r\n" in shown
    assert "\r\n0000000000100000: 0x1badb002 0x00000003\r\n" in shown
    assert "\r\nVM status: running\r\n" in shown


@pytest.mark.parametrize(
    "option",
    [["-qmp", f"unix:{LONG_PATH},server=on,wait=off"], ["-incoming", f"unix:{LONG_PATH}"]],
    ids=["qmp", "incoming"],
)
def test_system_cli_socket_path_too_long(option):
    result = subprocess.run(
        [*BASE, "-S", *option], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"arctern-system: {option[0]} {option[1]}: "
        f"UNIX socket path '{LONG_PATH}' is too long: Path must be less than 108 bytes\n"
    )


def _read_prompts(sock: socket.socket, prompts: int) -> bytes:
    """What the console sends up to its ``prompts``-th prompt (or until it hangs up)."""
    data = b""
    while data.count(b"(qemu) ") < prompts:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _socket_sessions(emulator: str, where: Path) -> list[bytes]:
    """Two clients, one after the other, of ``-monitor unix:...`` (",," a comma in PATH)."""
    path = where / "h,m.sock"
    process = subprocess.Popen(
        [emulator, *BASE[1:], "-S", "-monitor", f"unix:{where}/h,,m.sock,server=on,wait=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        sessions = []
        for commands in (b"info status\ncont\ninfo status\n", b"info status\nquit\n"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(60)
                sock.connect(str(path))
                sock.sendall(commands)
                sessions.append(_read_prompts(sock, 1 + commands.count(b"\n")))
        assert process.wait(60) == 0
    finally:
        process.kill()
        process.wait()
    return sessions


def test_monitor_on_a_unix_socket_one_client_at_a_time(tmp_path):
    """Each client gets a console (banner, prompt, QEMU's echo of each key), as QEMU's."""
    (tmp_path / "a").mkdir()
    (tmp_path / "q").mkdir()
    ours = _socket_sessions(ARCTERN, tmp_path / "a")
    qemus = _socket_sessions("qemu-system-i386", tmp_path / "q")
    banner = f"Arctern {__version__}".encode()
    assert ours == [re.sub(rb"^QEMU \S+", banner, session) for session in qemus]
    assert b"\r\nVM status: paused (prelaunch)\r\n" in ours[0]
    assert ours[0].endswith(b"\r\nVM status: running\r\n(qemu) ")
    assert ours[1].startswith(banner) and b"\r\nVM status: running\r\n" in ours[1]
    assert ours[1].endswith(b"quit\x1b[K\r\n")


def test_monitor_device_that_is_no_socket_is_one_error_line():
    result = subprocess.run(
        [*BASE, "-S", "-monitor", "vc"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == "arctern-system: -monitor vc: expected unix:PATH or tcp:HOST:PORT\n"
