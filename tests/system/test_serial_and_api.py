"""Serial backends of arctern-system, and the Python API driving the same guest.

The echo guest reads a line from COM1 and answers it: input must reach the
guest and output come back through every backend (stdio, file:, unix:...,server),
as under QEMU.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import pytest
from guests.build import BASE_ARGS, emulator_command

from arctern.machine import MemoryChardev
from arctern.machine.launch import DeviceConfig, MachineConfig, launch

HERE = Path(__file__).parent
DEBUG_EXIT = DeviceConfig("isa-debug-exit", {"iobase": "0xf4", "iosize": "1"})


@pytest.fixture(scope="module")
def echo(guest_elf) -> Path:
    return guest_elf(HERE / "echo_guest.c")


def test_stdin_reaches_the_guest_as_under_qemu(echo, run_guest_both):
    runs = run_guest_both(echo, stdin=b"hello, guest\n")
    assert runs["arctern"] == runs["qemu"] == ("ready\ngot 'HELLO, GUEST'\n", (12 << 1) | 1)


def arctern_system(echo: Path, serial: str, *extra: str) -> subprocess.Popen:
    args = [a if a != "stdio" else serial for a in BASE_ARGS]
    return subprocess.Popen(
        [*emulator_command("arctern"), *args, "-kernel", str(echo), *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_file_backend_collects_the_output(echo, tmp_path):
    log = tmp_path / "serial.log"
    proc = arctern_system(echo, f"file:{log}")
    deadline = time.monotonic() + 60
    while b"ready" not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.terminate()  # a file gives no input: the guest waits forever
    out, err = proc.communicate(timeout=30)
    assert log.read_bytes() == b"ready\n" and out == b""
    assert proc.returncode == 0 and err == b"arctern-system: terminating on signal 15\n"


@pytest.mark.parametrize("spelling", ["-serial", "-chardev"])
def test_unix_server_backend_talks_both_ways(echo, tmp_path, spelling):
    path = tmp_path / "serial.sock"
    if spelling == "-serial":
        proc = arctern_system(echo, f"unix:{path},server=on,wait=off")
    else:
        chardev = f"socket,id=s0,path={path},server=on,wait=off"
        proc = arctern_system(echo, "chardev:s0", "-chardev", chardev)
    try:
        deadline = time.monotonic() + 60
        while not path.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
            client.settimeout(60)
            client.sendall(b"over the socket\n")
            received = b""
            while b"got" not in received or not received.endswith(b"\n"):
                chunk = client.recv(4096)
                assert chunk, received
                received += chunk
        assert received.endswith(b"got 'OVER THE SOCKET'\n")
        assert proc.wait(timeout=60) == (15 << 1) | 1
    finally:
        proc.kill()
        proc.communicate()


def test_python_api_runs_pauses_and_talks_to_the_guest(echo):
    serial = MemoryChardev()
    machine = launch(
        MachineConfig("microvm", kernel=str(echo), devices=[DEBUG_EXIT], serials=[serial])
    )
    try:
        assert machine.runstate == "prelaunch"
        machine.run_for(60, until=lambda: b"ready\n" in serial.output)
        assert serial.output == b"ready\n" and machine.runstate == "running"
        machine.pause()
        before, frozen = machine.cpus[0].icount, machine.clock.ns()
        serial.feed(b"paused\n")
        machine.run_for(0.2)
        assert machine.cpus[0].icount == before and machine.clock.ns() == frozen
        assert serial.output == b"ready\n"  # the guest did not run: no answer yet
        machine.resume()
        assert machine.run_for(60) == (6 << 1) | 1
        assert serial.output == b"ready\ngot 'PAUSED'\n" and machine.finished
    finally:
        machine.close()


def test_ctrl_a_x_quits_a_mon_stdio_terminal(echo):
    args = [a if a != "stdio" else "mon:stdio" for a in BASE_ARGS]
    proc = subprocess.Popen(
        [*emulator_command("arctern"), *args, "-kernel", str(echo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.stdin.write(b"ab\x01\x01c\x01x")  # C-a C-a types a C-a; C-a x quits
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out == b"Arctern: Terminated\n\r"  # the guest never saw a whole line
    finally:
        proc.kill()
        proc.communicate()


@contextlib.contextmanager
def power_machine(kernel: Path, append: str, **config):
    """The power guest on microvm through the Python API: (machine, its serial output)."""
    serial = MemoryChardev()
    machine = launch(
        MachineConfig(
            "microvm",
            kernel=str(kernel),
            append=append,
            devices=[DEBUG_EXIT],
            serials=[serial],
            **config,
        )
    )
    try:
        yield machine, serial.output
    finally:
        machine.close()


def test_guest_reset_reboots_the_kernel(guest_elf):
    """Without -no-reboot a reset request starts the Multiboot kernel again, as in QEMU."""
    with power_machine(guest_elf(HERE / "power_guest.c"), "reset") as (machine, output):
        machine.run_for(60, until=lambda: output.count(b"power guest: reset\n") >= 3)
        assert output.count(b"power guest: reset\n") >= 3
        assert b"still running" not in output and not machine.finished


def test_no_shutdown_stops_at_power_off_and_a_reset_starts_again(guest_elf):
    kernel = guest_elf(HERE / "power_guest.c")
    with power_machine(kernel, "poweroff", no_shutdown=True) as (machine, output):
        machine.run_for(60, until=lambda: machine.runstate == "shutdown")
        assert machine.runstate == "shutdown" and not machine.finished
        machine.run_for(0.1)  # stays stopped, serving the loop
        assert output == b"power guest: poweroff\n"
        machine.reset()
        assert machine.runstate == "prelaunch"
        machine.resume()
        machine.run_for(60, until=lambda: output.count(b"poweroff") == 2)
        assert output == b"power guest: poweroff\n" * 2
