"""One ``arctern-system`` child process of arctern-demo: its serial console and its QMP monitor.

The guest's first serial port is the child's stdio: a thread collects the lines it
prints, and :meth:`EmulatorProcess.send` types on its keyboard. QMP goes through a
unix socket in the work directory with the qemu.qmp client library (its synchronous
``legacy`` API). Every failure becomes a :class:`~arctern.errors.MigrationError`
naming the side and, when the process died, what it said last on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from arctern.errors import MigrationError

#: How long one QMP command may take before the side counts as hung.
QMP_TIMEOUT = 30.0
#: How long a child gets to open its monitor socket, and to leave when told to.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
#: How long a QMP failure waits for the process to exit, in case it is on its way out.
DYING_TIMEOUT = 1.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that has the kernel SIGTERM the child when the demo dies (Linux).

    A killed demo (SIGKILL, a test's timeout, a second Ctrl-C during the clean-up)
    would otherwise leave the source guest running for ever. The hook runs between
    fork and exec, so it does no more than one foreign call with prepared arguments.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    option, sig = ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM)

    def hook() -> None:
        prctl(option, sig)

    return hook


_PRE_EXEC = _die_with_parent()


def tool(name: str) -> str:
    """An Arctern command next to this interpreter (a venv's bin/), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


class EmulatorProcess:
    """``arctern-system ARGS -serial stdio -qmp unix:...``, started at once."""

    def __init__(self, name: str, workdir: Path, args: list[str], sockets: Path) -> None:
        """Start it; its stderr goes to ``workdir/NAME.log``, its QMP socket in ``sockets``."""
        self.name = name
        self.qmp_path = sockets / f"{name}.qmp"
        self.log_path = workdir / f"{name}.log"
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.output: list[str] = []  # every serial line read so far
        self.qmp: QEMUMonitorProtocol | None = None
        command = [tool("arctern-system"), *args, "-serial", "stdio"]
        command += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        with self.log_path.open("wb") as log:
            try:
                # A session of its own: Ctrl-C at the terminal reaches the demo alone,
                # which reports the interruption and ends its children itself.
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    preexec_fn=_PRE_EXEC,
                )
            except OSError as exc:
                raise MigrationError(f"{name}: cannot start {command[0]}: {exc.strerror}") from None
        self._reader = threading.Thread(target=self._read_serial, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_serial(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\r\n"))

    def new_lines(self) -> list[str]:
        """Serial lines printed since the last call (also kept in ``output``)."""
        fresh = []
        with contextlib.suppress(queue.Empty):
            while True:
                fresh.append(self.lines.get_nowait())
        self.output.extend(fresh)
        return fresh

    def finish_output(self) -> None:
        """Once the process ended: wait until its last serial output was read."""
        self._reader.join(STOP_TIMEOUT)

    def last_words(self) -> str:
        """The last line the process wrote on stderr, or its exit status."""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        if lines:
            return lines[-1]
        return f"exit status {self.process.returncode}"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise MigrationError(f"{self.name}: arctern-system stopped: {self.last_words()}")

    def connect(self) -> None:
        """Wait for the QMP socket and negotiate capabilities."""
        deadline = time.monotonic() + START_TIMEOUT
        while not self.qmp_path.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise MigrationError(f"{self.name}: no QMP socket after {START_TIMEOUT:.0f} s")
            time.sleep(0.02)
        self.qmp = QEMUMonitorProtocol(str(self.qmp_path), nickname=self.name)
        try:
            self.qmp.connect()
        except (QMPError, OSError) as exc:
            self._fail("connecting to QMP", exc)
        self.qmp.settimeout(QMP_TIMEOUT)

    def cmd(self, command: str, **arguments: Any) -> Any:
        """Execute a QMP command; its return value."""
        if self.qmp is None:
            raise MigrationError(f"{self.name}: QMP is not connected")
        try:
            return self.qmp.cmd(command, **arguments)
        except (QMPError, OSError, EOFError, TimeoutError) as exc:
            self._fail(f"QMP {command}", exc)

    def _fail(self, what: str, exc: BaseException) -> NoReturn:
        """Report the process's own last words if it is dying: they say why."""
        if self.wait_exit(DYING_TIMEOUT) is not None:
            raise MigrationError(f"{self.name}: arctern-system stopped: {self.last_words()}")
        reason = str(exc) or type(exc).__name__
        raise MigrationError(f"{self.name}: {what} failed: {reason}") from None

    def send(self, data: bytes) -> None:
        """Type ``data`` on the guest's serial console."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except OSError:
            self.check_alive()
            raise MigrationError(f"{self.name}: the serial console is closed") from None

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Leave nothing behind: ask politely (QMP quit), then terminate, then kill."""
        asked = self.process.poll() is None and self._quit()
        if self.qmp is not None:
            with contextlib.suppress(Exception):  # the socket may be gone with the process
                self.qmp.close()
            self.qmp = None
        if not (asked and self.wait_exit(STOP_TIMEOUT) is not None):
            self.process.terminate()
            if self.wait_exit(STOP_TIMEOUT) is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(STOP_TIMEOUT)
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def _quit(self) -> bool:
        if self.qmp is None:
            return False
        try:
            self.qmp.cmd("quit")
        except Exception:  # noqa: BLE001 - any failure: fall back to signals
            return False
        return True
