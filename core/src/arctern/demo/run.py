"""The live-migration demo: a guest writing its disk moves to another process while it runs.

Steps (each reported to an :class:`Observer`): create a fresh image, start a
destination ``arctern-system -incoming`` on it (its image inactive), start the
source with the built-in guest, let the guest get going, migrate it while it
writes (progress from ``query-migrate`` several times a second), let it finish
at the destination, and check the image with ``arctern-img check``. The
result says whether everything verified.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from qemu.qmp.legacy import QEMUMonitorProtocol

from arctern.block.image import create_image
from arctern.errors import MigrationError

log = logging.getLogger(__name__)

GUEST = Path(__file__).with_name("disk_writer.elf")
TRANSPORTS = ("tcp", "unix", "exec")
IMAGE_SIZE = 64 << 20
MIGRATE_AT = "round 100 ok"
VERIFIED = "verified"
TIMEOUT = 300.0
NO_CHECK = 63  # arctern-img check, as qemu-img: the format has no metadata to check (raw)


@dataclass
class DemoOptions:
    workdir: Path
    transport: str = "tcp"
    image_format: str = "qcow2"
    ram_mib: int = 64
    max_bandwidth: int = 0  # bytes/s, 0: unlimited


@dataclass
class DemoResult:
    migration: dict[str, Any] = field(default_factory=dict)
    guest_output: str = ""
    guest_status: int | None = None
    check_status: int | None = None  # arctern-img check's exit status (63: nothing to check)
    check_output: str = ""

    @property
    def guest_line(self) -> str:
        lines = [line for line in self.guest_output.splitlines() if VERIFIED in line]
        return lines[-1] if lines else ""

    @property
    def ok(self) -> bool:
        return (
            self.migration.get("status") == "completed"
            and self.guest_status == 1  # the guest's exit(0) through isa-debug-exit
            and bool(self.guest_line)
            and self.check_status in (0, NO_CHECK)
        )


class Observer(Protocol):
    def step(self, text: str) -> None: ...

    def guest(self, line: str) -> None: ...

    def progress(self, info: dict[str, Any]) -> None: ...


def _tool(name: str) -> str:
    """An Arctern command next to this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Emulator:
    """One arctern-system process with its QMP connection and serial output file."""

    def __init__(self, name: str, workdir: Path, args: list[str]) -> None:
        self.name = name
        self.serial = workdir / f"{name}.serial"
        self.qmp_path = workdir / f"{name}.qmp"
        self.stderr = (workdir / f"{name}.log").open("w+b")
        command = [_tool("arctern-system"), *args, "-serial", f"file:{self.serial}"]
        command += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr
        )
        self.qmp: QEMUMonitorProtocol | None = None
        self._read = 0

    def connect(self) -> None:
        deadline = time.monotonic() + 60
        while not self.qmp_path.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise MigrationError(f"{self.name}: no QMP socket after 60 s")
            time.sleep(0.02)
        self.qmp = QEMUMonitorProtocol(str(self.qmp_path))
        self.qmp.connect()

    def cmd(self, name: str, **args: Any) -> Any:
        assert self.qmp is not None
        return self.qmp.cmd(name, **args)

    def error(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise MigrationError(f"{self.name} stopped: {self.error()}")

    def new_lines(self) -> Iterator[str]:
        """Complete serial lines printed since the last call."""
        if not self.serial.exists():
            return
        with self.serial.open("rb") as f:
            f.seek(self._read)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._read += end
        yield from data[:end].decode(errors="replace").splitlines()

    def output(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def close(self) -> None:
        if self.qmp is not None:
            with contextlib.suppress(Exception):  # the process may have gone first
                self.qmp.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()


class MigrationDemo:
    def __init__(self, options: DemoOptions, observer: Observer) -> None:
        if options.transport not in TRANSPORTS:
            raise MigrationError(
                f"unknown transport '{options.transport}' (choose {', '.join(TRANSPORTS)})"
            )
        self.options = options
        self.observer = observer
        self.image = options.workdir / f"disk.{options.image_format}"
        self.result = DemoResult()

    def _args(self) -> list[str]:
        opts = self.options
        return [
            "-M", "microvm,acpi=off", "-m", str(opts.ram_mib), "-nodefaults",
            "-display", "none", "-kernel", str(GUEST),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
            "-drive", f"file={self.image},format={opts.image_format},if=none,id=disk0",
            "-device", "virtio-blk-device,drive=disk0",
        ]  # fmt: skip

    def _uris(self) -> tuple[str, str]:
        """(what the source migrates to, what the destination listens on)."""
        workdir = self.options.workdir
        if self.options.transport == "tcp":
            uri = f"tcp:127.0.0.1:{_free_port()}"
            return uri, uri
        if self.options.transport == "unix":
            uri = f"unix:{workdir / 'migration.sock'}"
            return uri, uri
        state = workdir / "guest.state"
        return f"exec:cat > '{state}'", f"exec:cat '{state}'"

    def run(self) -> DemoResult:
        opts = self.options
        obs = self.observer
        create_image(str(self.image), opts.image_format, IMAGE_SIZE)
        obs.step(f"created a fresh {opts.image_format} image {self.image} (64 MiB)")
        out_uri, in_uri = self._uris()
        dest = source = None
        try:
            if opts.transport != "exec":
                dest = self._start_destination(in_uri)
            source = _Emulator("source", opts.workdir, self._args())
            source.connect()
            obs.step(f"source: guest running (pid {source.process.pid})")
            self._follow(source, until=MIGRATE_AT)
            self._migrate(source, out_uri)
            if dest is None:
                dest = self._start_destination(in_uri)
            self._finish(source, dest)
        finally:
            for emulator in (source, dest):
                if emulator is not None:
                    emulator.close()
        self._check_image()
        return self.result

    def _start_destination(self, uri: str) -> _Emulator:
        dest = _Emulator("destination", self.options.workdir, [*self._args(), "-incoming", uri])
        dest.connect()
        self.observer.step(
            f"destination: waiting on {uri} (pid {dest.process.pid}), image inactive"
        )
        return dest

    def _follow(self, emulator: _Emulator, until: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for line in emulator.new_lines():
                self.observer.guest(f"[{emulator.name}] {line}")
                if until in line:
                    return
            emulator.check_alive()
            if time.monotonic() > deadline:
                raise MigrationError(f"the guest never printed '{until}'")
            time.sleep(0.05)

    def _migrate(self, source: _Emulator, uri: str) -> None:
        obs = self.observer
        if self.options.max_bandwidth:
            source.cmd("migrate-set-parameters", **{"max-bandwidth": self.options.max_bandwidth})
        else:
            source.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        obs.step(f"source: migrate {uri} while the guest writes its disk")
        source.cmd("migrate", uri=uri)
        deadline = time.monotonic() + TIMEOUT
        while True:
            info = source.cmd("query-migrate")
            obs.progress(info)
            for line in source.new_lines():
                obs.guest(f"[source] {line}")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            source.check_alive()
            if time.monotonic() > deadline:
                raise MigrationError("the migration did not finish in time")
            time.sleep(0.1)
        self.result.migration = info
        if info["status"] != "completed":
            raise MigrationError(f"migration {info['status']}: {info.get('error-desc', '')}")
        state = source.cmd("query-status")["status"]
        obs.step(f"source: migration completed, guest {state} there, image inactive")

    def _finish(self, source: _Emulator, dest: _Emulator) -> None:
        obs = self.observer
        deadline = time.monotonic() + TIMEOUT
        while dest.process.poll() is None:
            for line in dest.new_lines():
                obs.guest(f"[destination] {line}")
            if time.monotonic() > deadline:
                raise MigrationError("the guest did not finish at the destination")
            time.sleep(0.05)
        for line in dest.new_lines():
            obs.guest(f"[destination] {line}")
        self.result.guest_status = dest.process.returncode
        self.result.guest_output = source.output() + dest.output()
        obs.step(f"destination: guest finished (exit status {dest.process.returncode})")

    def _check_image(self) -> None:
        result = subprocess.run(
            [_tool("arctern-img"), "check", str(self.image)], capture_output=True, text=True
        )
        self.result.check_status = result.returncode
        self.result.check_output = (result.stdout + result.stderr).strip()
