"""The destination side: receive, load, verify, then activate images and resume.

The listener is bound when the migration is set up (``-incoming URI`` or
``migrate-incoming``), so a bad address is an immediate error. A reader
thread accepts the source and copies RAM pages straight into the stopped
guest's RAM; the other sections are kept until END. The main loop then
(:meth:`IncomingMigration.poll`) loads CPU, device and clock state,
compares digests when the source sent one (``verify``), tells the source the
verdict when the stream has a return path and waits for its GO, and only
then activates the images (each driver's ``invalidate_cache``; with
``late-block-activate`` a guest that does not start here leaves that to
``cont``) and resumes the guest, unless started with ``-S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from arctern.errors import ArcternError, MigrationError
from arctern.migration import stream as fmt
from arctern.migration.handover import activate_images
from arctern.migration.outgoing import VERDICT_GO, VERDICT_NO, VERDICT_OK
from arctern.migration.state import StateCollector, digest
from arctern.migration.transport import MigrationListener, MigrationStream, MigrationTransport
from arctern.migration.wakeup import Wakeup
from arctern.migration.worker import MigrationWorker

log = logging.getLogger(__name__)


class StreamLoader(MigrationWorker):
    """Accepts the source and loads the stream; hands over to the main loop at END."""

    def __init__(self, machine: Any, listener: MigrationListener, uri: str, wakeup: Wakeup) -> None:
        super().__init__(f"incoming migration {uri}", wakeup)
        self.machine = machine
        self.listener = listener
        self.uri = uri
        self.collector = StateCollector(uri)
        self.bytes_read = 0
        self.pages = 0
        self.connected = threading.Event()
        self.loaded = threading.Event()
        self.verdict: bytes | None = None  # set by the main loop
        self.decided = threading.Event()
        self.go = threading.Event()
        self.closing = False

    @property
    def stopping(self) -> bool:
        return self.closing

    def describe(self, exc: Exception) -> str:
        return f"migration stream from {self.uri}: {type(exc).__name__}: {exc}"

    def work(self) -> None:
        stream = self.listener.accept()
        self.stream = stream
        self.listener.close()
        self.connected.set()
        self.wakeup.signal()
        self._load(stream)
        self.loaded.set()
        self.wakeup.signal()
        self.decided.wait()
        if stream.has_return_path:
            stream.write(self.verdict or VERDICT_NO)
            if self.verdict == VERDICT_OK:
                if stream.read_exact(2) != VERDICT_GO:
                    raise MigrationError(
                        f"source {self.uri} did not confirm the hand-over; "
                        "the images stay inactive here"
                    )
        if self.verdict == VERDICT_OK:
            self.go.set()

    def _load(self, stream: MigrationStream) -> None:
        reader = fmt.StreamReader(stream, self.uri)
        reader.read_header()
        ram = self.machine.ram
        checked = False
        for sec in reader.sections():
            if sec.kind == fmt.RAM_PAGES:
                if not checked:
                    raise MigrationError(f"migration stream from {self.uri}: RAM before setup")
                self.pages += fmt.load_ram_section(ram, sec.payload, self.uri)
            else:
                self.collector.take(sec)
                if sec.kind == fmt.BLOCK:
                    self.collector.check_machine(self.machine)
                    checked = True
            self.bytes_read = reader.bytes_read
        if not checked:
            raise MigrationError(f"migration stream from {self.uri} carries no machine setup")

    def decide(self, verdict: bytes) -> None:
        self.verdict = verdict
        self.decided.set()

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        if self.stream is not None:
            self.stream.close()
        self.decided.set()


class IncomingMigration:
    """``-incoming URI``: the machine waits in run state ``inmigrate`` until this completes."""

    def __init__(
        self,
        machine: Any,
        transport: MigrationTransport,
        uri: str,
        autostart: bool,
        capabilities: dict[str, bool],
        set_status: Callable[[str], None],
        wakeup: Wakeup,
    ) -> None:
        self.machine = machine
        self.uri = uri
        self.autostart = autostart
        self.capabilities = capabilities  # the manager's, read at take-over as QEMU does
        self._set_status = set_status
        self.listener = transport.listen(uri)
        self.socket_address = self.listener.address()
        self.status = "setup"
        self.error: str | None = None
        self.start = time.monotonic()
        self.end_time: float | None = None
        self.images_inactive = True
        self.source_runstate = "paused"  # known once the state is loaded
        self.loader = StreamLoader(machine, self.listener, uri, wakeup)
        set_status("setup")
        self.loader.start()

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self.status}
        if self.socket_address and self.status == "setup":
            info["socket-address"] = [self.socket_address]
        now = self.end_time or time.monotonic()
        info["total-time"] = int((now - self.start) * 1000)
        if self.status != "setup":
            info["ram"] = {
                "transferred": self.loader.bytes_read,
                "total": self.machine.ram.size,
                "normal": self.loader.pages,
            }
        if self.error:
            info["error-desc"] = self.error
        return info

    def poll(self) -> None:
        if self.finished:
            return
        loader = self.loader
        if loader.error is not None:
            self._fail(loader.error)
        elif self.status == "setup" and loader.connected.is_set():
            self.status = "active"
            self._set_status("active")
        elif self.status == "active" and loader.loaded.is_set() and not loader.decided.is_set():
            self._load_state()
        elif loader.go.is_set():
            self._take_over()

    def _load_state(self) -> None:
        machine = self.machine
        collector = self.loader.collector
        try:
            self.source_runstate = collector.runstate()
            collector.apply(machine)
            machine.ram.mark_all_dirty()
            if any(machine.ram.code):
                machine.ram.code_written(machine.ram.base, machine.ram.end)
            if collector.verify is not None and digest(machine) != collector.verify:
                raise MigrationError(
                    "verify: RAM, CPU or device state differs from the source's at switchover"
                )
            collector.finish(machine)
        except ArcternError as exc:
            # The loader thread tells the source why, then closes the stream.
            self.loader.decide(VERDICT_NO + str(exc).encode()[:4000])
            self._fail(str(exc), close=False)
            return
        self.loader.decide(VERDICT_OK)

    def _take_over(self) -> None:
        machine = self.machine
        running = self.source_runstate == "running"
        start = self.autostart and running
        # As QEMU: the images are activated now, unless late-block-activate leaves that to
        # cont for a guest that does not start here. If activation fails the migration
        # still completes, the guest does not start, and cont tries again.
        if start or not self.capabilities.get("late-block-activate"):
            try:
                activate_images(machine)
                self.images_inactive = False
            except ArcternError as exc:
                log.error("%s", exc)
                start = False
        self.end_time = time.monotonic()
        if start:
            machine.resume()
        else:
            # As QEMU: a running source with -S waits in "paused"; any other state (an
            # I/O error stop, a guest never started) carries over, and cont resumes it.
            machine.pause("paused" if running else self.source_runstate)
        # Last, as QEMU: whoever sees "completed" finds the guest already in its run state
        # (the RESUME event comes before the MIGRATION event).
        self.status = "completed"
        self._set_status("completed")
        log.info("incoming migration from %s completed", self.uri)

    def _fail(self, error: str, *, close: bool = True) -> None:
        if close:
            self.loader.close()
        self.end_time = time.monotonic()
        self.error = error
        self.status = "failed"
        self._set_status("failed")
        log.error("load of migration failed: %s", error)

    def wait_closed(self, timeout: float) -> None:
        """Let the reader thread finish telling the source why (before the process exits)."""
        self.loader.join(timeout)

    def cancel(self) -> None:
        """Stop waiting (``quit`` during -incoming)."""
        if not self.finished:
            self._fail("cancelled")
