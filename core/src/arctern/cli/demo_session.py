"""The live-migration demo as a sequence of steps, each reported to an :class:`Observer`.

1. find the machine type's built-in guest (``MachineType.builtin_guest``) and create
   a fresh image;
2. start the destination ``arctern-system -incoming URI`` on that image (inactive: it
   neither writes nor locks it); over ``exec:`` it starts after the source saved the
   guest, since it reads the saved stream;
3. start the source with the guest, which writes, reads back and checks its disk and
   rewrites RAM, and wait until it is well under way;
4. ``migrate`` over QMP while the guest writes, following ``query-migrate``;
5. wait for the guest to run and write on the destination, the source in postmigrate;
   along the way the image's ``active`` flag (``query-block``) is recorded on each side,
   and the source's disk writes (``query-blockstats``) must stop at the hand-over;
6. press a key on the destination's serial console: the guest checks every sector and
   page it wrote, prints its verification line and powers off; its progress lines
   must appear once each across both sides;
7. ``arctern-img check`` the image.

:attr:`DemoResult.ok` says whether all of it verified.

Any failure on the way raises an :class:`~arctern.errors.ArcternError` (one line);
every child process is ended on every path.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from arctern.block.image import create_image
from arctern.errors import ArcternError, MigrationError, NotFoundError, UsageError
from arctern.plugins import default_registry

from .demo_child import EmulatorProcess, tool

PURPOSE = "migration-demo"
TRANSPORTS = ("tcp", "unix", "exec")
IMAGE_SIZE = 256 << 20
#: The guest's progress lines ("round N: ...", every PROGRESS_EVERY rounds); the
#: migration starts once it printed the first one.
PROGRESS = "round "
PROGRESS_RE = re.compile(r"round (\d+):")
PROGRESS_EVERY = 100
VERIFIED = "verified "
VERIFIED_RE = re.compile(r"verified (\d+) rounds")
FAILED = "FAIL"
#: arctern-img check's (and qemu-img's) status when the format has nothing to check (raw).
NO_CHECK = 63
GUEST_TIMEOUT = 120.0
#: How long a guest that verified gets to power the machine off (some boards cannot).
POWER_OFF_GRACE = 5.0
#: A migration whose status and transferred bytes do not move for this long is cancelled.
STALL_TIMEOUT = 60.0
POLL_INTERVAL = 0.125
MIGRATION_ENDED = ("completed", "failed", "cancelled")
DRIVE = "disk0"
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL
#: Whether the image must be active at each point of the hand-over the demo looks at.
HANDOVER = {
    "destination, waiting for the stream": False,
    "source, after the migration": False,
    "destination, running the guest": True,
}


class GuestFailure(ArcternError):
    """The guest found data it wrote changed, or did not finish."""


@dataclass
class DemoOptions:
    workdir: Path
    machine: str = "microvm"  # -M NAME[,OPTIONS]
    transport: str = "tcp"
    image_format: str = "qcow2"
    ram: str = "128M"  # -m
    max_bandwidth: int = 0  # bytes/s, 0: unlimited
    port: int | None = None  # tcp: the destination's port (default: a free one)
    guest: Path | None = None  # default: the machine type's built-in guest


@dataclass
class DemoResult:
    image: Path = Path()
    uri: str = ""
    #: The source's last ``query-migrate`` reply.
    migration: dict[str, Any] = field(default_factory=dict)
    source_state: str = ""
    destination_state: str = ""
    destination_pid: int | None = None
    #: What the guest printed on each side.
    source_output: list[str] = field(default_factory=list)
    destination_output: list[str] = field(default_factory=list)
    #: The destination's exit status; None if the guest halted instead of powering off.
    guest_status: int | None = None
    check_status: int | None = None
    check_output: str = ""
    #: The image's ``active`` flag (query-block) at each point of the hand-over that was
    #: observed, e.g. ("destination, waiting", False); None where the monitor has no flag.
    activity: list[tuple[str, bool | None]] = field(default_factory=list)
    #: Guest writes to the disk (query-blockstats wr_operations): the source's when the
    #: migration completed and at the end, the destination's before the final check.
    source_writes: int | None = None
    source_writes_at_end: int | None = None
    destination_writes: int | None = None

    @property
    def handover_ok(self) -> bool:
        """Each observed ``active`` flag as the hand-over requires (see HANDOVER), and
        no guest write on the source once it handed over."""
        return (
            all(active in (None, HANDOVER[point]) for point, active in self.activity)
            and self.source_writes == self.source_writes_at_end
        )

    @property
    def guest_line(self) -> str:
        lines = [line for line in self.destination_output if line.startswith(VERIFIED)]
        return lines[-1] if lines else ""

    @property
    def serial_continuous(self) -> bool:
        """Every progress line once, in order, across both sides: none lost or doubled."""
        verified = VERIFIED_RE.match(self.guest_line)
        if verified is None:
            return False
        numbers = [
            int(match[1])
            for line in self.source_output + self.destination_output
            if (match := PROGRESS_RE.match(line))
        ]
        every = PROGRESS_EVERY
        return numbers == list(range(every, int(verified[1]) + 1, every))

    @property
    def image_clean(self) -> bool:
        return self.check_status in (0, NO_CHECK)

    @property
    def ok(self) -> bool:
        return (
            self.migration.get("status") == "completed"
            and self.source_state == "postmigrate"
            and bool(self.guest_line)
            and self.guest_status in (0, None)
            and self.serial_continuous
            and self.handover_ok
            and self.image_clean
        )


class Observer(Protocol):
    def step(self, text: str) -> None: ...

    def guest(self, side: str, line: str) -> None: ...

    def progress(self, info: dict[str, Any]) -> None: ...


def builtin_guest(machine: str) -> Path:
    """The migration demo guest that ``-M machine``'s target ships."""
    name = machine.partition(",")[0]
    try:
        machine_type = default_registry().machine_type(name)
    except NotFoundError:
        raise UsageError(f"-M {name}: no such machine type (see arctern-system -M help)") from None
    guest = machine_type.builtin_guest(PURPOSE)
    if guest is None or not guest.is_file():
        raise UsageError(f"-M {name}: its target ships no built-in migration demo guest")
    return guest


@contextmanager
def _socket_directory(workdir: Path) -> Iterator[Path]:
    """Where the unix sockets go: ``workdir``, unless its path does not suit them.

    A socket's path has at most 107 bytes, and the monitor binds under a longer
    temporary name first; a comma would have to be doubled in ``-qmp unix:PATH,...``.
    A deep or odd work directory gets a private one in /tmp instead.
    """
    longest = bytes(workdir / "destination.qmp.4194304.tmp")
    if len(longest) <= SOCKET_PATH_MAX and b"," not in longest:
        yield workdir
        return
    short = Path(tempfile.mkdtemp(prefix="arctern-demo-", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _opt_value(path: Path) -> str:
    """A path as the value in a QEMU option list (``-drive file=...``): commas doubled."""
    return str(path).replace(",", ",,")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MigrationDemo:
    def __init__(self, options: DemoOptions, observer: Observer) -> None:
        if options.transport not in TRANSPORTS:
            raise UsageError(f"unknown transport '{options.transport}'")
        self.options = options
        self.observer = observer
        self.guest = options.guest or builtin_guest(options.machine)
        self.image = options.workdir / f"disk.{options.image_format}"
        self.result = DemoResult(image=self.image)
        self._children: list[EmulatorProcess] = []
        self._sockets = options.workdir

    def run(self) -> DemoResult:
        create_image(str(self.image), self.options.image_format, IMAGE_SIZE)
        self.observer.step(
            f"created a fresh {self.options.image_format} image of {IMAGE_SIZE >> 20} MiB: "
            f"{self.image}"
        )
        with _socket_directory(self.options.workdir) as self._sockets:
            try:
                self._migrate_and_finish()
            finally:
                for child in reversed(self._children):
                    child.close()
        self._check_image()
        return self.result

    # --- the steps ----------------------------------------------------------------------

    def _migrate_and_finish(self) -> None:
        out_uri, in_uri = self._uris()
        self.result.uri = out_uri
        dest = None if self.options.transport == "exec" else self._start_destination(in_uri)
        source = self._start("source", self._args())
        self.observer.step(f"source: pid {source.pid}, guest {self.guest.name} running")
        self._wait_for_line(source, PROGRESS)
        self._migrate(source, out_uri, dest)
        if dest is None:
            dest = self._start_destination(in_uri)
        self._wait_running(dest)
        self.result.source_state = source.cmd("query-status")["status"]
        source_image = self._observe_image(source, "source, after the migration")
        dest_image = self._observe_image(dest, "destination, running the guest")
        self.observer.step(
            f"the guest runs on the destination (pid {dest.pid}), image {dest_image}; "
            f"the source is {self.result.source_state}, image {source_image}"
        )
        self.result.source_writes = self._writes(source)
        self._finish(dest)
        self._echo(source)  # a source that kept printing would break the continuity check
        self.result.source_output = source.output
        self.result.source_writes_at_end = self._writes(source)

    def _args(self) -> list[str]:
        opts = self.options
        drive = f"file={_opt_value(self.image)},format={opts.image_format},if=none,id={DRIVE}"
        return [
            "-M", opts.machine, "-m", opts.ram, "-nodefaults", "-display", "none",
            "-kernel", str(self.guest),
            "-drive", drive,
            "-device", f"virtio-blk-device,drive={DRIVE}",
        ]  # fmt: skip

    def _uris(self) -> tuple[str, str]:
        """(where the source migrates to, what the destination takes in)."""
        workdir = self.options.workdir
        if self.options.transport == "tcp":
            uri = f"tcp:127.0.0.1:{self.options.port or _free_port()}"
            return uri, uri
        if self.options.transport == "unix":
            uri = f"unix:{self._sockets / 'migration.sock'}"
            return uri, uri
        state = shlex.quote(str(workdir / "guest.state"))
        return f"exec:cat > {state}", f"exec:cat {state}"

    def _start(self, name: str, args: list[str]) -> EmulatorProcess:
        child = EmulatorProcess(name, self.options.workdir, args, self._sockets)
        self._children.append(child)
        child.connect()
        return child

    def _start_destination(self, uri: str) -> EmulatorProcess:
        dest = self._start("destination", [*self._args(), "-incoming", uri])
        self.result.destination_pid = dest.pid
        if dest.cmd("query-status")["status"] == "inmigrate":
            image = self._observe_image(dest, "destination, waiting for the stream")
            self.observer.step(f"destination: pid {dest.pid}, -incoming {uri}, image {image}")
        else:
            self.observer.step(f"destination: pid {dest.pid}, -incoming {uri}")
        return dest

    def _writes(self, child: EmulatorProcess) -> int | None:
        """The guest's write requests to the disk so far, from query-blockstats."""
        drives = {drive["device"]: drive for drive in child.cmd("query-blockstats")}
        return drives.get(DRIVE, {}).get("stats", {}).get("wr_operations")

    def _observe_image(self, child: EmulatorProcess, point: str) -> str:
        """Record the image's ``active`` flag at ``point``; say it in words."""
        drives = {drive["device"]: drive for drive in child.cmd("query-block")}
        active = drives.get(DRIVE, {}).get("inserted", {}).get("active")
        self.result.activity.append((point, active))
        return {True: "active", False: "inactive", None: "(activity not reported)"}[active]

    def _echo(self, child: EmulatorProcess) -> list[str]:
        lines = child.new_lines()
        for line in lines:
            self.observer.guest(child.name, line)
            if line.startswith(FAILED):
                raise GuestFailure(f"the guest on the {child.name} reports: {line}")
        return lines

    def _wait_for_line(self, child: EmulatorProcess, prefix: str) -> None:
        deadline = time.monotonic() + GUEST_TIMEOUT
        while not any(line.startswith(prefix) for line in self._echo(child)):
            child.check_alive()
            if time.monotonic() > deadline:
                raise GuestFailure(f"{child.name}: the guest printed no '{prefix}' line in time")
            time.sleep(POLL_INTERVAL / 4)

    def _migrate(self, source: EmulatorProcess, uri: str, dest: EmulatorProcess | None) -> None:
        source.cmd("migrate-set-parameters", **{"max-bandwidth": self.options.max_bandwidth})
        self.observer.step(f"source: migrate {uri} while the guest writes")
        source.cmd("migrate", uri=uri)
        last, since = None, time.monotonic()
        while True:
            info = source.cmd("query-migrate")
            self.observer.progress(info)
            self._echo(source)
            status = info.get("status", "")
            if status in MIGRATION_ENDED:
                break
            for child in (source, dest):
                if child is not None:
                    child.check_alive()
            now = time.monotonic()
            if (status, info.get("ram", {}).get("transferred")) != last:
                last, since = (status, info.get("ram", {}).get("transferred")), now
            elif now - since > STALL_TIMEOUT:
                source.cmd("migrate_cancel")
                raise MigrationError(f"no progress for {STALL_TIMEOUT:.0f} s: cancelled")
            time.sleep(POLL_INTERVAL)
        self.result.migration = info
        if status != "completed":
            reason = info.get("error-desc", "no reason given")
            raise MigrationError(f"migration to {uri} {status}: {reason}")

    def _wait_running(self, dest: EmulatorProcess) -> None:
        deadline = time.monotonic() + GUEST_TIMEOUT
        while (state := dest.cmd("query-status")["status"]) != "running":
            self._echo(dest)
            if time.monotonic() > deadline:
                raise MigrationError(f"destination: still {state} after {GUEST_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL / 4)
        self.result.destination_state = state

    def _finish(self, dest: EmulatorProcess) -> None:
        """Let the guest show it writes on the destination, then have it check and stop."""
        self._wait_for_line(dest, PROGRESS)
        self.observer.step("destination: a key on the serial console: the guest checks it all")
        self.result.destination_writes = self._writes(dest)
        dest.send(b"q")
        deadline = time.monotonic() + GUEST_TIMEOUT
        while (status := dest.wait_exit(POLL_INTERVAL)) is None:
            if any(line.startswith(VERIFIED) for line in self._echo(dest)):
                deadline = min(deadline, time.monotonic() + POWER_OFF_GRACE)
            elif time.monotonic() > deadline:
                break
        else:
            dest.finish_output()
            self._echo(dest)
        self.result.guest_status = status
        self.result.destination_output = dest.output
        if not self.result.guest_line:
            ended = "is still running" if status is None else f"ended (exit status {status})"
            raise GuestFailure(f"destination: the guest {ended} without verifying")
        if status is None:
            self.observer.step("destination: the guest verified and halted (no power-off)")
        else:
            self.observer.step(f"destination: the guest powered the machine off (status {status})")

    def _check_image(self) -> None:
        command = [tool("arctern-img"), "check", "-f", self.options.image_format, str(self.image)]
        result = subprocess.run(command, capture_output=True, text=True)
        self.result.check_status = result.returncode
        self.result.check_output = (result.stdout + result.stderr).strip()
