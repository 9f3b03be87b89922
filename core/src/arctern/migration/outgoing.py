"""The source side: pre-copy rounds, switchover, hand-over, cancel and failure.

Work is split between two threads so the guest keeps running:

* the machine's main loop calls :meth:`OutgoingMigration.poll` between CPU
  slices. It alone touches the machine: it copies dirty pages into stream
  sections (the guest is not running during the copy, so each page is
  consistent), stops the guest, saves state and switches images over;
* a :class:`StreamWriter` thread connects and pushes those sections into the
  transport, which may block; the main loop never waits on the network.

Statuses follow QEMU: setup -> active -> device -> completed, or failed /
cancelling -> cancelled. On failure or cancel before the destination has
taken over, the images are re-activated and the guest resumes if it ran.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from arctern.errors import ArcternError, MigrationError
from arctern.machine.memory import PAGE_SHIFT, PAGE_SIZE
from arctern.migration import stream as fmt
from arctern.migration.handover import activate_images, inactivate_images
from arctern.migration.state import digest, drive_table, state_sections
from arctern.migration.transport import MigrationStream, MigrationTransport
from arctern.migration.wakeup import Wakeup
from arctern.migration.worker import MigrationWorker

log = logging.getLogger(__name__)

POLL_BUDGET = 0.02  # seconds of page copying per main-loop poll
MAX_BACKLOG = 32 << 20  # bytes queued for the writer before the producer waits
LOW_WATER = 8 << 20  # the writer wakes the main loop when the queue drains below this
ROUND_END_BACKLOG = 4 << 20  # a round ends (and convergence is judged) below this backlog
MAX_ROUNDS = 30  # switch over after this many rounds even if the guest dirties too fast
RUN_PAGES = 256  # pages per RAM section
BURST = 0.05  # seconds of max-bandwidth that may be queued at once

VERDICT_OK, VERDICT_NO, VERDICT_GO = b"OK", b"NO", b"GO"

Emit = Callable[[str, dict[str, Any]], None]


class StreamWriter(MigrationWorker):
    """Connects through a transport and writes queued chunks; reports errors, never raises.

    Once every chunk is written it reads the destination's verdict when the
    stream has a return path, answers GO (after which cancelling is too late:
    the destination owns the guest) and finishes the stream.
    """

    def __init__(self, transport: MigrationTransport, uri: str, wakeup: Wakeup) -> None:
        super().__init__(f"migration to {uri}", wakeup)
        self.transport = transport
        self.uri = uri
        self.queue: collections.deque[bytes | None] = collections.deque()
        self.cond = threading.Condition()
        self.queued = 0  # bytes waiting in the queue
        self.sent = 0  # bytes written to the transport
        self.connected = threading.Event()
        self.finished = threading.Event()
        self.committed = False  # GO sent: the destination runs the guest now
        self.cancelled = False

    # --- main thread -----------------------------------------------------

    def put(self, chunks: list[bytes]) -> None:
        with self.cond:
            self.queue.extend(chunks)
            self.queued += sum(len(c) for c in chunks)
            self.cond.notify()

    def close_input(self) -> None:
        """No more chunks: finish the stream after the queued ones."""
        with self.cond:
            self.queue.append(None)
            self.cond.notify()

    def cancel(self) -> bool:
        """Stop at once; False if too late (the destination was told to take over)."""
        with self.cond:
            if self.committed:
                return False
            self.cancelled = True
            self.cond.notify()
            stream = self.stream
        if stream is not None:
            stream.close()
        return True

    # --- writer thread -----------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self.cancelled

    def describe(self, exc: Exception) -> str:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return f"migration to {self.uri} failed: {why}"

    def work(self) -> None:
        stream = self.transport.connect(self.uri)
        with self.cond:
            self.stream = stream
            if self.cancelled:
                stream.close()
                return
        self.connected.set()
        self.wakeup.signal()
        self._pump(stream)
        self._hand_over(stream)
        self.finished.set()

    def finish(self) -> None:
        with self.cond:
            self.cond.notify_all()
        super().finish()

    def _pump(self, stream: MigrationStream) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.cancelled:
                    self.cond.wait()
                if self.cancelled:
                    raise MigrationError("cancelled")
                chunk = self.queue.popleft()
            if chunk is None:
                return
            stream.write(chunk)
            with self.cond:
                was = self.queued
                self.queued -= len(chunk)
                self.sent += len(chunk)
                hungry = self.queued < LOW_WATER <= was or not self.queue
            if hungry:
                self.wakeup.signal()

    def _hand_over(self, stream: MigrationStream) -> None:
        if stream.has_return_path:
            verdict = stream.read_exact(2)
            if verdict == VERDICT_NO:
                why = stream.read_exact(4096).decode(errors="replace").strip()
                raise MigrationError(f"destination refused the migration: {why or 'no reason'}")
            if verdict != VERDICT_OK:
                raise MigrationError(f"destination {self.uri} closed the stream before loading it")
            with self.cond:
                if self.cancelled:
                    raise MigrationError("cancelled")
                self.committed = True
            stream.write(VERDICT_GO)
        stream.finish()


class OutgoingMigration:
    """One ``migrate URI``: created by the MigrationManager, advanced by its poll()."""

    def __init__(
        self,
        machine: Any,
        transport: MigrationTransport,
        uri: str,
        parameters: dict[str, int],
        capabilities: dict[str, bool],
        set_status: Callable[[str], None],
        emit: Emit,
        wakeup: Wakeup,
    ) -> None:
        self.machine = machine
        self.uri = uri
        self.parameters = parameters
        self.capabilities = capabilities
        self._set_status = set_status
        self.emit = emit
        self.status = "setup"
        self.error: str | None = None
        self.stopped_guest = False  # we paused a running guest at switchover: resume on failure
        self.images_inactive = False
        self.start = time.monotonic()
        self.setup_time: float | None = None
        self.active_start = 0.0
        self.stop_time: float | None = None
        self.end_time: float | None = None
        self.produced = 0
        self.round: collections.deque[tuple[int, int]] = collections.deque()
        self.round_start = 0.0
        self.dirty_sync_count = 0
        self.dirty_rate = 0.0
        self.encoder = fmt.RamEncoder(machine.ram, RUN_PAGES)
        self.sections = 0
        self.writer = StreamWriter(transport, uri, wakeup)
        set_status("setup")
        self.writer.start()

    # --- query-migrate ---------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def bandwidth(self) -> float:
        """Measured bytes per second written to the transport since RAM started flowing."""
        if not self.active_start:
            return 0.0
        elapsed = (self.end_time or time.monotonic()) - self.active_start
        return self.writer.sent / elapsed if elapsed > 0.001 else 0.0

    def remaining(self) -> int:
        pending = sum(count for _first, count in self.round)
        return (pending + self.machine.ram.dirty_count()) << PAGE_SHIFT

    def info(self) -> dict[str, Any]:
        now = self.end_time or time.monotonic()
        info: dict[str, Any] = {
            "status": self.status,
            "total-time": int((now - self.start) * 1000),
        }
        if self.setup_time is not None:
            info["setup-time"] = int(self.setup_time * 1000)
        if self.status == "completed" and self.stop_time is not None:
            info["downtime"] = int((self.end_time - self.stop_time) * 1000)
        elif self.status in ("active", "device"):
            bandwidth = self.bandwidth()
            pending = self.remaining() + self.writer.queued
            info["expected-downtime"] = int(pending / bandwidth * 1000) if bandwidth else 0
        if self.active_start:  # RAM has started to flow
            ram = self.machine.ram
            bandwidth = self.bandwidth()
            info["ram"] = {
                "transferred": self.writer.sent,
                "remaining": 0 if self.finished else self.remaining(),
                "total": ram.size,
                "duplicate": self.encoder.duplicate,
                "skipped": 0,
                "normal": self.encoder.normal,
                "normal-bytes": self.encoder.normal << PAGE_SHIFT,
                "dirty-pages-rate": int(self.dirty_rate),
                "mbps": round(bandwidth * 8 / 1e6, 3),
                "dirty-sync-count": self.dirty_sync_count,
                "page-size": 1 << PAGE_SHIFT,
            }
        if self.error:
            info["error-desc"] = self.error
        return info

    # --- main loop ---------------------------------------------------------

    def poll(self) -> None:
        if self.finished:
            return
        if self.status == "cancelling":
            self._abandon("cancelled", None)
        elif self.writer.error is not None:
            self._abandon("failed", self.writer.error)
        elif self.status == "setup":
            if self.writer.connected.is_set():
                self._begin()
        elif self.status == "active":
            self._iterate()
        elif self.status == "device" and self.writer.finished.is_set():
            self._complete()

    def cancel(self) -> None:
        if self.finished or self.status == "cancelling":
            return
        if not self.writer.cancel():
            log.info("migrate_cancel: too late, the destination already took over")
            return
        self.status = "cancelling"
        self._set_status("cancelling")
        self.poll()

    def _queue(self, chunks: list[bytes]) -> None:
        self.writer.put(chunks)
        self.sections += len(chunks)
        self.produced += sum(len(c) for c in chunks)

    def _begin(self) -> None:
        machine = self.machine
        self.setup_time = time.monotonic() - self.start
        global_state = {"ram-size": machine.ram.size}
        self._queue(
            [
                fmt.header(),
                b"".join(fmt.section(fmt.GLOBAL, "global", fmt.encode_plain(global_state))),
                b"".join(fmt.section(fmt.BLOCK, "block", fmt.encode_plain(drive_table(machine)))),
            ]
        )
        self.sections -= 1  # the header is not a section
        machine.ram.mark_all_dirty()
        self.active_start = time.monotonic()
        self._new_round()
        self.status = "active"
        self._set_status("active")

    def _sync_dirty(self) -> list[tuple[int, int]]:
        """Take the dirty page runs: a dirty sync, counted and announced as QEMU does
        (MIGRATION_PASS 1 before RAM flows, one per round, and the last at switchover)."""
        now = time.monotonic()
        runs = list(self.machine.ram.take_dirty())
        dirtied = sum(count for _first, count in runs)
        if self.dirty_sync_count and now > self.round_start:
            self.dirty_rate = dirtied / (now - self.round_start)
        self.round_start = now
        self.dirty_sync_count += 1
        if self.capabilities.get("events"):
            self.emit("MIGRATION_PASS", {"pass": self.dirty_sync_count})
        return runs

    def _new_round(self) -> None:
        self.round.extend(self._sync_dirty())

    def _allowance(self) -> float:
        """Bytes the max-bandwidth limit lets us queue now (a 50 ms burst; infinite when 0)."""
        limit = self.parameters["max-bandwidth"]
        if limit <= 0:
            return float("inf")
        return limit * (time.monotonic() - self.active_start + BURST) - self.produced

    def _iterate(self) -> None:
        deadline = time.monotonic() + POLL_BUDGET
        while self.round:
            allowance = self._allowance()
            if self.writer.queued > MAX_BACKLOG or allowance < PAGE_SIZE:
                return
            if time.monotonic() > deadline:
                return
            first, count = self.round.popleft()
            take = min(count, RUN_PAGES, int(min(allowance, 1 << 40)) >> PAGE_SHIFT)
            if take < count:
                self.round.appendleft((first + take, count - take))
            self._queue(self.encoder.encode(first, take))
        if self.writer.queued > ROUND_END_BACKLOG:
            return
        limit = self.parameters["downtime-limit"] / 1000
        pending = self.remaining() + self.writer.queued
        if pending <= self.bandwidth() * limit or self.dirty_sync_count >= MAX_ROUNDS:
            self._switchover()
        else:
            self._new_round()

    def _switchover(self) -> None:
        """Stop the guest, queue everything left, hand the images over, end the stream."""
        machine = self.machine
        self.stop_time = time.monotonic()
        runstate = machine.runstate
        # As QEMU (vm_stop_force_state): whatever the run state, finish-migrate now; a
        # running guest stops (STOP) before the switchover's status.
        self.stopped_guest = runstate == "running"
        machine.pause("finish-migrate")
        self.status = "device"
        self._set_status("device")
        try:
            self.round.clear()
            # The run state before switchover, as QEMU sends it: the destination resumes a
            # running guest and takes over any other state (paused, io-error, prelaunch).
            state = fmt.encode_plain({"runstate": runstate})
            self._queue([b"".join(fmt.section(fmt.GLOBAL, "global", state))])
            for first, count in self._sync_dirty():
                self._queue(self.encoder.encode(first, count))
            self._queue(state_sections(machine))
            if self.capabilities.get("verify"):
                self._queue([b"".join(fmt.section(fmt.VERIFY, "verify", digest(machine)))])
            self.images_inactive = True  # before: a partial inactivation is undone on failure
            inactivate_images(machine)
        except ArcternError as exc:
            self.writer.cancel()
            self._abandon("failed", str(exc))
            return
        except Exception as exc:  # a device or CPU that cannot save: fail, keep the guest
            log.error("saving the machine state failed", exc_info=True)
            self.writer.cancel()
            self._abandon("failed", f"saving the machine state failed: {type(exc).__name__}: {exc}")
            return
        self._queue([b"".join(fmt.end_section(self.sections))])
        self.writer.close_input()

    def _complete(self) -> None:
        self.end_time = time.monotonic()
        self.status = "completed"
        self.machine.pause("postmigrate")
        self._set_status("completed")
        log.info("migration to %s completed", self.uri)

    def _abandon(self, status: str, error: str | None) -> None:
        """Failure or cancel: the guest stays here, with its images active again."""
        self.writer.cancel()
        self.end_time = time.monotonic()
        self.error = error
        self.round.clear()
        if error:
            log.error("migration to %s failed: %s", self.uri, error)
        resume = self.stopped_guest
        if self.images_inactive:
            try:
                activate_images(self.machine)
                self.images_inactive = False
            except ArcternError as exc:
                resume = False
                self.error = f"{error or 'cancelled'}; the guest stays stopped because {exc}"
                log.error("%s", self.error)
        if resume and self.machine.runstate != "running":
            self.machine.resume()
        elif self.machine.runstate == "finish-migrate":
            # As QEMU 7.2: a guest that was not running, or could not take its images
            # back, ends in postmigrate (a paused guest too, images active again: migrate
            # is then refused until cont, as there); cont re-activates what is inactive.
            self.machine.pause("postmigrate")
        self.status = status
        self._set_status(status)
